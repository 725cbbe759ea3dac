#!/usr/bin/env bash
# Tier 4: ALTER EXTENSION UPDATE from every released version's frozen install script
# (sql/released/) to the current version gives the same catalog as a fresh install, and the
# secrets written before the update still decrypt and rotate.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init

CURRENT=$(sed -nE 's/^version = "(.*)"/\1/p' "$REPO/Cargo.toml" | head -1)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version); current version $CURRENT"

# Everything vault_ext owns, as text: functions (signature, body, flags, settings, ACL), views,
# columns, constraints, indexes, triggers, comments, table ACLs (sorted: grant order does not
# matter) and the dump configuration.
CATALOG=$(cat <<'EOF'
WITH members AS (
  SELECT classid, objid FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
   WHERE e.extname = 'vault_ext' AND d.deptype = 'e'
)
SELECT 'function ' || p.oid::regprocedure || ' ' || coalesce(pg_get_function_result(p.oid), 'procedure') || ' ' || md5(p.prosrc)
       || ' ' || p.provolatile::text || p.proparallel::text || p.prosecdef::text || p.proisstrict::text
       || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x), '')
       || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x), '')
       || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
       || CASE WHEN c.relkind = 'v' THEN ' ' || md5(pg_get_viewdef(c.oid)) ELSE '' END
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM members m JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'vault'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid)
  FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'vault'::regnamespace)
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger
 WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'vault'::regnamespace)
UNION ALL
SELECT 'config ' || c::regclass || ' ' || coalesce(w, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(c, w) WHERE e.extname = 'vault_ext'
UNION ALL
SELECT 'schema ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(nspacl) x) FROM pg_namespace WHERE nspname = 'vault'
ORDER BY 1
EOF
)

new_cluster up
start up || { cat "$(logfile up)"; exit 1; }
sql up "CREATE DATABASE fresh" >/dev/null
sql up "CREATE EXTENSION vault_ext" fresh >/dev/null
check "a fresh install is the current version" "$CURRENT" \
  "$(sql up "SELECT extversion FROM pg_extension WHERE extname = 'vault_ext'" fresh)"
FRESH=$(sql up "$CATALOG" fresh)
[ -n "${SHOW_CATALOG:-}" ] && echo "$FRESH"
check "the catalog query works (no error, every kind of object listed)" "column config constraint function index relation schema trigger" \
  "$(echo "$FRESH" | awk '{print $1}' | sort -u | tr '\n' ' ' | sed 's/ $//')"

for script in "$REPO"/sql/released/vault_ext--*.sql; do
  FROM=$(basename "$script" .sql); FROM=${FROM#vault_ext--}
  # Released install scripts are not installed by cargo pgrx (only upgrade scripts are).
  install -m 644 "$script" "$EXTDIR/"
  db=from_${FROM//./_}
  sql up "CREATE DATABASE $db" >/dev/null
  check "CREATE EXTENSION vault_ext VERSION '$FROM'" "$FROM" \
    "$(sql up "CREATE EXTENSION vault_ext VERSION '$FROM'; SELECT extversion FROM pg_extension WHERE extname = 'vault_ext'" "$db")"
  sql up "CREATE ROLE app_$db; SELECT vault.create_secret('before-update-' || g, 'old' || g) FROM generate_series(1, 50) g;
          SELECT vault.grant_secret((SELECT id FROM vault.secrets WHERE name = 'old1'), 'app_$db')" "$db" >/dev/null
  sql up "SELECT vault.create_secret('on-ietf', 'ietf', '', vault.create_key('k', 'aead-ietf'))" "$db" >/dev/null
  BEFORE=$(sql up "SELECT count(*) || ':' || md5(string_agg(name || decrypted_secret, ',' ORDER BY name)) FROM vault.decrypted_secrets" "$db")
  out=$(sql up "ALTER EXTENSION vault_ext UPDATE; SELECT extversion FROM pg_extension WHERE extname = 'vault_ext'" "$db")
  check "ALTER EXTENSION UPDATE from $FROM reaches $CURRENT" "$CURRENT" "$out"
  diffs=$(diff <(echo "$FRESH") <(sql up "$CATALOG" "$db"))
  check "catalog after update from $FROM = fresh install ($(echo "$FRESH" | wc -l) objects)" "" "$diffs"
  check "secrets written under $FROM decrypt after the update" "$BEFORE" \
    "$(sql up "SELECT count(*) || ':' || md5(string_agg(name || decrypted_secret, ',' ORDER BY name)) FROM vault.decrypted_secrets" "$db")"
  check "per-secret grant kept across the update" "app_$db" "$(sql up "SELECT grantee FROM vault.secret_grants" "$db")"
  sql up "SELECT vault.rotate_key()" "$db" >/dev/null
  check "rotate_key after the update: all ok" "51 ok" \
    "$(sql up "SELECT count(*) || ' ' || min(status) FROM vault.verify_secrets()" "$db")"
  check "current functions work after the update" "current" \
    "$(sql up "SELECT DISTINCT root_key FROM vault.key_status" "$db")"
done

summary "upgrade tests"
