-- GET /v1/campaigns pages a tenant's campaigns newest first by id (UUIDv7: time-ordered).
CREATE INDEX campaigns_tenant_id ON campaigns (tenant_id, id);
