-- A role with vault rights shadows functions and operators in public and pg_temp, puts them
-- before pg_catalog, and calls every vault function: none of its objects may run.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE ROLE regress_evil LOGIN IN ROLE vault_admin;
GRANT CREATE ON SCHEMA public TO regress_evil;
CREATE TABLE public.hijacked (what text);
GRANT INSERT ON public.hijacked TO PUBLIC;

SET ROLE regress_evil;
CREATE FUNCTION public.evil_text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('text ='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_text_eq);
CREATE FUNCTION public.evil_uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('uuid ='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = public.evil_uuid_eq);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('gen_random_uuid'); RETURN pg_catalog.gen_random_uuid(); END $$;
CREATE FUNCTION public.convert_from(bytea, name) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('convert_from'); RETURN pg_catalog.convert_from($1, $2); END $$;
CREATE FUNCTION public.max(bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT 0::bigint $$;
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('pg_temp.now'); RETURN pg_catalog.now(); END $$;
SET search_path = public, pg_temp, pg_catalog;

SELECT vault.create_secret('hijack value', 'hijack') IS NOT NULL AS created;
INSERT INTO vault.secrets (name, secret) VALUES ('hijack direct', 'direct value');
SELECT vault.update_secret(s.id, 'hijack value 2') FROM vault.secrets s WHERE s.name OPERATOR(pg_catalog.=) 'hijack';
SELECT vault.read_secret('hijack');
SELECT vault.create_key('hijack key') IS NOT NULL AS key_created;
SELECT vault.update_secret(s.id, new_key_id => k.id) FROM vault.secrets s, vault.keys k
 WHERE s.name OPERATOR(pg_catalog.=) 'hijack' AND k.name OPERATOR(pg_catalog.=) 'hijack key';
SELECT d.decrypted_secret FROM vault.decrypted_secrets d WHERE d.name OPERATOR(pg_catalog.=) 'hijack';
-- Control: an unqualified call from this session does reach the planted function.
SELECT now() IS NOT NULL AS control_call;
RESET search_path;
RESET ROLE;

-- Only the control call ran planted code.
SELECT what, count(*) FROM public.hijacked GROUP BY what;
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name LIKE 'hijack%' ORDER BY name;
DROP OWNED BY regress_evil;
DROP ROLE regress_evil;
DROP TABLE public.hijacked;
