-- SPEC §6: an application role that may only INSERT into its table fires a trigger that signs
-- each row with a vault secret, and still cannot read the vault.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT vault.create_secret('whsec_regress_signing_key', 'webhook_key') IS NOT NULL AS created;

CREATE EXTENSION IF NOT EXISTS pgcrypto; -- hmac()
CREATE ROLE regress_signer NOLOGIN IN ROLE vault_reader;
CREATE ROLE regress_app LOGIN;
CREATE TABLE public.outbox (id serial PRIMARY KEY, payload text NOT NULL, signature text);
GRANT INSERT ON public.outbox TO regress_app;
GRANT USAGE ON SEQUENCE public.outbox_id_seq TO regress_app;

CREATE FUNCTION public.sign_outbox() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  -- HMAC, not a hash of key || payload (which allows length extension).
  NEW.signature := pg_catalog.encode(public.hmac(pg_catalog.convert_to(NEW.payload, 'UTF8'),
    pg_catalog.convert_to(vault.read_secret('webhook_key'), 'UTF8'), 'sha256'), 'hex');
  RETURN NEW;
END
$$;
ALTER FUNCTION public.sign_outbox() OWNER TO regress_signer;
REVOKE ALL ON FUNCTION public.sign_outbox() FROM PUBLIC;
CREATE TRIGGER sign_outbox BEFORE INSERT ON public.outbox FOR EACH ROW EXECUTE FUNCTION public.sign_outbox();

SET ROLE regress_app;
INSERT INTO public.outbox (payload) VALUES ('{"event":"paid"}');
SELECT vault.read_secret('webhook_key');
\echo :SQLSTATE
SELECT decrypted_secret FROM vault.decrypted_secrets;
\echo :SQLSTATE
SELECT * FROM public.outbox;
\echo :SQLSTATE
RESET ROLE;

SELECT payload, signature = encode(hmac(convert_to(payload, 'UTF8'), convert_to('whsec_regress_signing_key', 'UTF8'), 'sha256'), 'hex') AS signed
  FROM public.outbox;

-- vault.read_secret used from a plain SQL function owned by a reader.
CREATE FUNCTION public.webhook_header() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$ SELECT 'Bearer ' OPERATOR(pg_catalog.||) pg_catalog.left(vault.read_secret('webhook_key'), 5) $$;
ALTER FUNCTION public.webhook_header() OWNER TO regress_signer;
REVOKE ALL ON FUNCTION public.webhook_header() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.webhook_header() TO regress_app;
-- Only the roles it is granted to may call a SECURITY DEFINER function that reads the vault.
SELECT has_function_privilege('public', 'public.webhook_header()', 'EXECUTE') AS public_may_call,
       has_function_privilege('public', 'public.sign_outbox()', 'EXECUTE') AS public_may_sign;
SET ROLE regress_app;
SELECT public.webhook_header();
RESET ROLE;

DROP TABLE public.outbox;
DROP FUNCTION public.sign_outbox(), public.webhook_header();
DROP ROLE regress_signer, regress_app;
DROP EXTENSION pgcrypto;
