#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL are reachable for Herald. Source it (the demo and test scripts
# do): it uses the servers at the configured URLs when they answer; otherwise it starts private
# ones from this machine's binaries, under target/services/ on free ports, exports
# HERALD__REDIS__URL / HERALD__DATABASE__URL pointing at them, and stops them when the calling
# script exits. Missing binaries are installed with apt when running as root; otherwise it says
# exactly what to install.
#
# The configured URLs come from HERALD__DATABASE__URL / HERALD__REDIS__URL when set, else from
# config/$HERALD_ENV.toml, else from config/default.toml. The scripts are a developer's tools:
# HERALD_ENV defaults to "local" here (the binary's own default is "production").

export HERALD_ENV="${HERALD_ENV:-local}"

herald_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
herald_services_dir="$herald_root/target/services"
herald_cleanup=()

herald_log() { echo "services: $*" >&2; }

# herald_config_value <section> <key>: the value in the env's TOML file, else in default.toml.
herald_config_value() {
  local section=$1 key=$2 file value
  for file in "$herald_root/config/$HERALD_ENV.toml" "$herald_root/config/default.toml"; do
    [ -f "$file" ] || continue
    value=$(awk -v section="[$section]" -v key="$key" '
      /^\[/ { in_section = ($0 == section) }
      in_section && $1 == key && $2 == "=" {
        sub(/^[^=]*= *"/, ""); sub(/".*$/, ""); print; exit
      }' "$file")
    if [ -n "$value" ]; then
      echo "$value"
      return
    fi
  done
}

# herald_parse_url <url>: sets url_host, url_port and url_path (the database name).
herald_parse_url() {
  local re='^[a-z+]+://([^@/]*@)?([^:/?]+)(:([0-9]+))?(/([^?]*))?'
  if [[ $1 =~ $re ]]; then
    url_host=${BASH_REMATCH[2]}
    url_port=${BASH_REMATCH[4]}
    url_path=${BASH_REMATCH[6]}
  else
    herald_log "cannot read the URL $1"
    return 1
  fi
}

herald_reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# herald_free_port <first>: the first port from <first> on where nothing listens.
herald_free_port() {
  local port=$1
  while herald_reachable 127.0.0.1 "$port"; do port=$((port + 1)); done
  echo "$port"
}

# herald_wait_for <what> <command...>: runs the command until it succeeds, for up to 30 s.
herald_wait_for() {
  local what=$1 i
  shift
  for i in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  herald_log "$what did not come up"
  return 1
}

# herald_install <package...>: installs Debian packages when root, else says how.
herald_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    herald_log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
  else
    herald_log "please install $* first: sudo apt-get install -y $*"
    return 1
  fi
}

herald_start_redis() {
  command -v redis-server >/dev/null || herald_install redis-server || return 1
  local port dir
  port=$(herald_free_port $((26379 + RANDOM % 1000))) # below the ephemeral range
  dir="$herald_services_dir/redis-$port"
  rm -rf "$dir" && mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --daemonize yes --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >/dev/null || return 1
  herald_wait_for "Redis on port $port" herald_reachable 127.0.0.1 "$port" || return 1
  herald_cleanup+=("kill \$(cat '$dir/redis.pid') 2>/dev/null; rm -rf '$dir'")
  export HERALD__REDIS__URL="redis://127.0.0.1:$port"
  herald_log "started a private Redis on 127.0.0.1:$port"
}

herald_start_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ]; then
    herald_install postgresql || return 1
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
  local port dir as_user=()
  port=$(herald_free_port $((25432 + RANDOM % 1000))) # below the ephemeral range
  dir="$herald_services_dir/postgres-$port"
  rm -rf "$dir" && mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root.
    chown nobody:nogroup "$dir"
    as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$dir")
  fi
  "${as_user[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync \
    >"$dir/initdb.log" 2>&1 || { herald_log "initdb failed: see $dir/initdb.log"; return 1; }
  "${as_user[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >/dev/null || { herald_log "Postgres failed to start: see $dir/postgres.log"; return 1; }
  herald_cleanup+=("${as_user[*]} '$bin/pg_ctl' -D '$dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$dir'")
  export HERALD__DATABASE__URL="postgres://postgres@127.0.0.1:$port/${url_path:-herald}"
  herald_log "started a private PostgreSQL on 127.0.0.1:$port"
}

herald_stop_services() {
  local step
  for step in "${herald_cleanup[@]}"; do eval "$step"; done
  herald_cleanup=()
}

herald_ensure_services() {
  local redis_url database_url
  redis_url=${HERALD__REDIS__URL:-$(herald_config_value redis url)}
  database_url=${HERALD__DATABASE__URL:-$(herald_config_value database url)}

  herald_parse_url "$redis_url" || return 1
  if herald_reachable "$url_host" "${url_port:-6379}"; then
    herald_log "using Redis at $url_host:${url_port:-6379}"
  else
    herald_log "no Redis at $url_host:${url_port:-6379}"
    herald_start_redis || return 1
  fi

  herald_parse_url "$database_url" || return 1
  if herald_reachable "$url_host" "${url_port:-5432}"; then
    herald_log "using PostgreSQL at $url_host:${url_port:-5432}"
  else
    herald_log "no PostgreSQL at $url_host:${url_port:-5432}"
    herald_start_postgres || return 1
  fi
}

trap herald_stop_services EXIT
herald_ensure_services || { herald_log "cannot provide Redis and PostgreSQL"; exit 1; }
