-- A role with vault rights plants operators and functions in public, views named like vault's
-- tables in pg_temp, puts them before pg_catalog, and goes through every entry point of
-- vault_ext (functions, views, direct DML on the tables, the triggers behind them): none of its
-- objects may run. A control at the end reaches each planted object from the same session, so
-- the test cannot pass because the plants are never picked. In a database of its own: the
-- rotations here would change the keys the later tests expect.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE DATABASE vault_hijack;
\c vault_hijack
SET client_min_messages = warning;
CREATE EXTENSION vault_ext;
RESET client_min_messages;
CREATE ROLE regress_evil LOGIN IN ROLE vault_admin, vault_reader, vault_viewer;
CREATE ROLE regress_grantee NOLOGIN;
GRANT CREATE ON SCHEMA public TO regress_evil;
CREATE TABLE public.hijacked (what text);
GRANT INSERT ON public.hijacked TO PUBLIC;

SET ROLE regress_evil;
-- Operators: every comparison on the types vault compares, plus ||, + and -. Each logs its
-- name and then does what pg_catalog's would. (format() only: an operator in this block would
-- pick up the ones already planted.)
DO $$
DECLARE
  o record;
  fn text;
BEGIN
  FOR o IN
    SELECT op, t AS l, t AS r, 'boolean' AS res
      FROM unnest(ARRAY['=', '<>', '<', '>', '<=', '>=']) op,
           unnest(ARRAY['text', 'uuid', 'integer', 'bigint', 'timestamptz', 'bytea', 'name']) t
    UNION ALL VALUES ('||', 'text', 'text', 'text'), ('||', 'bytea', 'bytea', 'bytea'),
                     ('+', 'timestamptz', 'interval', 'timestamptz'), ('-', 'timestamptz', 'interval', 'timestamptz'),
                     ('+', 'integer', 'integer', 'integer'), ('+', 'bigint', 'bigint', 'bigint'),
                     ('<', 'interval', 'interval', 'boolean')
  LOOP
    fn := format('evil_op_%s_%s', md5(format('%s %s %s', o.op, o.l, o.r)), o.l);
    EXECUTE format('CREATE FUNCTION public.%I(%s, %s) RETURNS %s LANGUAGE plpgsql AS $f$ BEGIN '
                   'INSERT INTO public.hijacked VALUES (%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END $f$',
                   fn, o.l, o.r, o.res, format('%s %s %s', o.l, o.op, o.r), o.op);
    EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.%I)', o.op, o.l, o.r, fn);
  END LOOP;
END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('gen_random_uuid()'); RETURN pg_catalog.gen_random_uuid(); END $$;
CREATE FUNCTION public.convert_from(bytea, name) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('convert_from()'); RETURN pg_catalog.convert_from($1, $2); END $$;
CREATE FUNCTION public.convert_to(text, name) RETURNS bytea LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('convert_to()'); RETURN pg_catalog.convert_to($1, $2); END $$;
CREATE FUNCTION public.encode(bytea, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('encode()'); RETURN pg_catalog.encode($1, $2); END $$;
CREATE FUNCTION public.decode(text, text) RETURNS bytea LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('decode()'); RETURN pg_catalog.decode($1, $2); END $$;
CREATE FUNCTION public.length(text) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('length()'); RETURN pg_catalog.length($1); END $$;
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('current_setting()'); RETURN pg_catalog.current_setting($1); END $$;
CREATE FUNCTION public.max(bigint) RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('max()'); RETURN 0; END $$;
-- Views named like vault's tables: an unqualified table name finds them (pg_temp is searched
-- for relations even under search_path = ''). Each logs once per scan, empty tables too.
CREATE FUNCTION public.evil_rel(text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('relation ' OPERATOR(pg_catalog.||) $1); RETURN true; END $$;
CREATE TEMP VIEW secrets AS SELECT t.* FROM (SELECT public.evil_rel('secrets') AS hit) h LEFT JOIN vault.secrets t ON h.hit;
CREATE TEMP VIEW keys AS SELECT t.* FROM (SELECT public.evil_rel('keys') AS hit) h LEFT JOIN vault.keys t ON h.hit;
CREATE TEMP VIEW secret_acl AS SELECT t.* FROM (SELECT public.evil_rel('secret_acl') AS hit) h LEFT JOIN vault.secret_acl t ON h.hit;
CREATE TEMP VIEW secret_versions AS SELECT t.* FROM (SELECT public.evil_rel('secret_versions') AS hit) h LEFT JOIN vault.secret_versions t ON h.hit;
CREATE TEMP VIEW audit_log AS SELECT t.* FROM (SELECT public.evil_rel('audit_log') AS hit) h LEFT JOIN vault.audit_log t ON h.hit;
SELECT count(*) AS planted_functions FROM pg_catalog.pg_proc WHERE proowner OPERATOR(pg_catalog.=) 'regress_evil'::regrole;
SET search_path = public, pg_temp, pg_catalog;

-- Secrets: create_secret, direct INSERT, update_secret (value, metadata, key, check-and-set),
-- direct UPDATE and DELETE, read_secret, the decrypted view. Ids go to psql variables so no
-- statement here needs an operator of its own.
SELECT vault.create_secret('hijack value', 'hijack', 'first', NULL, ARRAY['prod']) AS sid \gset
INSERT INTO vault.secrets (name, secret, expires_at)
VALUES ('hijack direct', 'direct value', '2000-01-01') RETURNING id AS did \gset
INSERT INTO vault.secrets (name, secret) VALUES ('hijack doomed', 'doomed value') RETURNING id AS xid \gset
SELECT vault.update_secret(:'sid', 'hijack value 2');
SELECT vault.update_secret(:'sid', new_description => 'second', new_tags => ARRAY['prod', 'eu'], expected_version => 2);
\set VERBOSITY sqlstate
SELECT vault.update_secret(:'sid', 'stale', expected_version => 1);
\set VERBOSITY default
UPDATE vault.secrets SET secret = 'direct value 2', nonce = NULL WHERE id OPERATOR(pg_catalog.=) :'did';
DELETE FROM vault.secrets WHERE id OPERATOR(pg_catalog.=) :'xid';
SELECT vault.read_secret('hijack');
SELECT name, description, decrypted_secret, tags FROM vault.decrypted_secrets ORDER BY name;
-- Masks and expiry.
SELECT vault.mask('0123456789abcdef') AS mask;
SELECT name, masked_secret FROM vault.masked_secrets ORDER BY name;
SELECT name FROM vault.expiring_secrets('7 days');
-- Per-secret grants.
SELECT vault.grant_secret(:'sid', 'regress_grantee');
SELECT secret_name, grantee FROM vault.secret_grants;
SELECT vault.revoke_secret(:'sid', 'regress_grantee');
SELECT count(*) AS grants_left FROM vault.secret_grants;
-- Versions and rollback.
SELECT name, version, decrypted_secret FROM vault.decrypted_secret_versions ORDER BY version;
SELECT count(*) AS kept_versions FROM vault.secret_versions;
SELECT vault.rollback_secret(:'sid', 1) AS new_version;
-- Keys: create_key, a secret moved to it, reencrypt_secrets, rotate_key, key_status,
-- verify_secrets, a key deleted, root_key_fingerprint, rotate_root_key (refused here: no
-- previous root key; tests/key_cluster.sh runs its body under planted objects too).
SELECT vault.create_key('hijack key', 'aead-ietf') AS kid \gset
SELECT vault.update_secret(:'sid', new_key_id => :'kid');
SELECT vault.reencrypt_secrets(:'kid') AS moved;
SELECT vault.rotate_key() IS NOT NULL AS rotated;
SELECT name, key_type, status, secrets FROM vault.key_status ORDER BY key_id;
SELECT status, count(*) FROM vault.verify_secrets() GROUP BY status;
DELETE FROM vault.keys WHERE id OPERATOR(pg_catalog.=) :'kid';
SELECT pg_catalog.length(vault.root_key_fingerprint()) AS fingerprint_len;
SELECT vault.rotate_root_key();
-- The audit trail and its purge.
SELECT action, count(*) FROM vault.audit_log GROUP BY action ORDER BY action;
-- (vault.audit_min_retention keeps the last 30 days from a vault_admin; the purge still runs)
SELECT vault.purge_audit_log('30 days') >= 0 AS purged;
SELECT name, decrypted_secret FROM vault.decrypted_secrets ORDER BY name;
RESET search_path;
RESET ROLE;

-- No planted object ran.
SELECT what AS planted_code_that_ran FROM public.hijacked;

-- Control: the same role, path and session reach every planted object by its unqualified name,
-- once each (typed NULLs: each plant is an exact match, found before pg_catalog's).
SET ROLE regress_evil;
SET search_path = public, pg_temp, pg_catalog;
DO $$
DECLARE
  o record;
BEGIN
  FOR o IN
    SELECT p.oprname, pg_catalog.format_type(p.oprleft, NULL) AS l, pg_catalog.format_type(p.oprright, NULL) AS r
      FROM pg_catalog.pg_operator p WHERE p.oprowner OPERATOR(pg_catalog.=) 'regress_evil'::regrole
  LOOP
    EXECUTE format('SELECT NULL::%s %s NULL::%s', o.l, o.oprname, o.r);
  END LOOP;
END $$;
SELECT now() IS NOT NULL, clock_timestamp() IS NOT NULL, gen_random_uuid() IS NOT NULL,
       convert_from('\x61', 'UTF8'), convert_to('a', 'UTF8'), encode('\x61', 'hex'), decode('61', 'hex'),
       length('abc'), current_setting('search_path'), max(1::bigint);
SELECT (SELECT count(*) FROM secrets) IS NOT NULL, (SELECT count(*) FROM keys) IS NOT NULL,
       (SELECT count(*) FROM secret_acl) IS NOT NULL, (SELECT count(*) FROM secret_versions) IS NOT NULL,
       (SELECT count(*) FROM audit_log) IS NOT NULL;
RESET search_path;
RESET ROLE;
-- Every planted operator and function ran (relations at least once; each other plant once).
SELECT (SELECT count(*) FROM pg_catalog.pg_operator WHERE oprowner = 'regress_evil'::regrole) AS planted_operators,
       count(*) FILTER (WHERE what LIKE '% %' AND what NOT LIKE 'relation %') AS operators_reached,
       count(*) FILTER (WHERE what LIKE '%()') AS functions_reached,
       count(*) FILTER (WHERE what LIKE 'relation %') AS relations_reached,
       string_agg(what || ' x' || n, ', ') FILTER (WHERE n > 1 AND what NOT LIKE 'relation %') AS reached_more_than_once
  FROM (SELECT what, count(*) AS n FROM public.hijacked GROUP BY what) h;

\c vault_regress
DROP DATABASE vault_hijack;
DROP ROLE regress_evil, regress_grantee;
