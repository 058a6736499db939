//! Recipient uploads as CSV (#12): streamed, a header naming the parameters, numbers without
//! a country code read in `default_country`, a report by row and the whole list as errors.csv.

use herald::client::ApiClient;
use herald::stack::{Roles, Stack};
use herald_ingest::views::{CampaignView, UploadReport};
use herald_tests::{TestContext, refusal};
use serde_json::json;

async fn campaign(api: &ApiClient, phone_number_id: &str, template: &str) -> CampaignView {
    let number = api.create_number(phone_number_id, "t", 80).await.unwrap();
    api.create_campaign("csv", template, "en_GB", &[number.id])
        .await
        .unwrap()
}

fn rejected(report: &UploadReport) -> Vec<(usize, &str)> {
    report
        .rejected
        .iter()
        .map(|r| (r.row, r.field.as_str()))
        .collect()
}

#[tokio::test]
async fn a_csv_with_a_bom_quotes_crlf_blank_lines_and_bad_rows_gives_the_exact_report() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let c = campaign(&api, "640000000001", "spring_sale_2026").await;
    let csv = concat!(
        "\u{feff}Phone , body.1,body.2\r\n", // 1: header, with a BOM
        "+447400000001,\"Ada, Countess\",25%\r\n", // 2
        "07400 000002,Bob,10%\r\n",          // 3: GB by default_country
        "\r\n",                              // 4: blank
        "\"+44 7400 000003\",\"Cy \"\"the\"\" Third\",5%\r\n", // 5
        "not a phone,Dee,5%\r\n",            // 6: refused, phone
        "+447400000004,,5%\r\n",             // 7: refused, body.1 missing
        "+447400000001,Ada again,25%\r\n",   // 8: a duplicate of line 2
        "+447400000005,\"Two\nlines\",5%\r\n", // 9-10: refused, body.1 has a newline
        "+447400000006,Fay,5%,extra\r\n",    // 11: refused, a field too many
        "\r\n",                              // 12: blank
        "+447400000007,Gil,5%",              // 13: no final line break
    );
    let report = api.upload_csv(c.id, csv, Some("GB")).await.unwrap();
    assert_eq!(
        (
            report.rows,
            report.accepted,
            report.duplicates,
            report.rejected_count
        ),
        (9, 4, 1, 4),
        "{report:?}"
    );
    assert_eq!(
        rejected(&report),
        [(6, "phone"), (7, "body.1"), (9, "body.1"), (11, "row")]
    );
    let stored: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT recipient, variables FROM messages ORDER BY recipient")
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
    let recipients: Vec<&str> = stored.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        recipients,
        [
            "+447400000001",
            "+447400000002",
            "+447400000003",
            "+447400000007"
        ]
    );
    assert_eq!(
        stored[0].1,
        json!({"body.1": "Ada, Countess", "body.2": "25%"})
    );
    assert_eq!(stored[2].1["body.1"], "Cy \"the\" Third");

    let errors = api.get_text(&report.errors_csv).await.unwrap();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines[0], "row,field,reason");
    assert_eq!(lines.len(), 5, "{errors}");
    assert!(lines[1].starts_with("6,phone,"), "{errors}");
    assert!(lines[4].starts_with("11,row,has 4 fields"), "{errors}");
    // Another tenant cannot read it.
    let other = ctx.tenant(&stack.ingest_url).await;
    assert_eq!(
        refusal(other.get_text(&report.errors_csv).await.unwrap_err()).status,
        404
    );
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_header_that_does_not_fit_the_templates_is_refused_whole() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let c = campaign(&api, "640000000002", "spring_sale_2026").await;
    for (csv, field, says) in [
        (
            "phone,body.1,body.2,colour,size\n+447400000001,a,b,red,L\n",
            "columns",
            "colour, size",
        ),
        (
            "mobile,body.1,body.2\n+447400000001,a,b\n",
            "columns",
            "mobile",
        ),
        ("body.1,body.2\na,b\n", "phone", "no phone column"),
        ("phone,body.1\n+447400000001,a\n", "body.2", "is required"),
    ] {
        let e = refusal(api.upload_csv(c.id, csv, None).await.unwrap_err());
        assert_eq!(e.status, 422, "{csv}: {}", e.body);
        let details = e.body["error"]["fields"].as_array().unwrap();
        let hit = details
            .iter()
            .find(|d| d["field"] == field)
            .unwrap_or_else(|| panic!("{csv}: {}", e.body));
        assert!(hit["reason"].as_str().unwrap().contains(says), "{}", e.body);
    }
    // A line that never ends is refused before it fills the memory.
    let endless = format!(
        "phone,body.1,body.2\n+447400000001,{},b",
        "x".repeat(2 << 20)
    );
    let e = refusal(api.upload_csv(c.id, endless, None).await.unwrap_err());
    assert_eq!(e.status, 400, "{}", e.body);
    assert!(e.body.to_string().contains("longer than"), "{}", e.body);
    let bad_country = refusal(
        api.upload_csv(c.id, "phone,body.1,body.2\n", Some("XX"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad_country.status, 422);
    assert_eq!(api.campaign(c.id).await.unwrap().counters.total, 0);
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_multipart_file_is_read_and_a_thousand_refusals_are_listed_inline() {
    let ctx = TestContext::new().await;
    let stack = Stack::start(ctx.settings.clone(), Roles::INGEST_WITH_SIMULATOR)
        .await
        .unwrap();
    let api = ctx.tenant(&stack.ingest_url).await;
    let c = campaign(&api, "640000000003", "spring_sale_2026").await;
    let mut file = String::from("phone,body.1,body.2\n919876543210,Asha,20%\n");
    for i in 0..1_500 {
        file.push_str(&format!("12{i},x,y\n"));
    }
    let boundary = "herald-test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audience.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let report: UploadReport = api
        .post_raw(
            &format!("/v1/campaigns/{}/recipients?default_country=IN", c.id),
            &format!("multipart/form-data; boundary={boundary}"),
            form,
        )
        .await
        .unwrap();
    assert_eq!((report.accepted, report.rejected_count), (1, 1_500));
    assert_eq!(report.rejected.len(), 1_000, "the first thousand inline");
    assert_eq!(
        (report.rejected[0].row, report.rejected[999].row),
        (3, 1_002),
        "lines of an LF file"
    );
    let stored: String = sqlx::query_scalar("SELECT recipient FROM messages")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(stored, "+919876543210");
    let errors = api.get_text(&report.errors_csv).await.unwrap();
    assert_eq!(errors.lines().count(), 1_501, "a header and every refusal");
    stack.stop().await.unwrap();
    ctx.cleanup().await;
}
