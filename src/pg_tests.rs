//! Tier 2: tests inside a server with vault_ext preloaded (see `pg_test` in lib.rs).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql).expect("query runs").expect("not NULL")
    }

    fn run(sql: &str) {
        Spi::run(sql).expect("statement runs");
    }

    #[pg_test]
    fn root_key_is_loaded_when_preloaded() {
        let fp: String = one("SELECT vault.root_key_fingerprint()");
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
        // The default key recorded the fingerprint it was created under.
        let stored: String = one("SELECT root_key_fingerprint FROM vault.keys WHERE status = 'default'");
        assert_eq!(stored, fp);
    }

    #[pg_test]
    fn create_secret_round_trips_edge_values() {
        for (value, label) in [
            ("''", "empty"),
            ("'héllo wörld ✓ 你好 😀'", "utf8"),
            ("repeat('x', 1024 * 1024)", "one MiB"),
            ("E'line1\\nline2\\t\"q\" \\\\'", "escapes"),
        ] {
            let id: pgrx::Uuid = one(&format!("SELECT vault.create_secret({value}, '{label}')"));
            let same: bool = one(&format!(
                "SELECT decrypted_secret = {value} AND secret <> {value} \
                 FROM vault.decrypted_secrets WHERE id = '{id}'"
            ));
            assert!(same, "{label}");
        }
    }

    #[pg_test]
    fn every_create_gets_a_fresh_nonce() {
        run("SELECT vault.create_secret('same value') FROM generate_series(1, 1000)");
        let distinct: i64 = one("SELECT count(DISTINCT nonce) FROM vault.secrets WHERE length(nonce) = 16");
        assert_eq!(distinct, 1000);
        let ok: i64 = one("SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret = 'same value'");
        assert_eq!(ok, 1000);
    }

    #[pg_test]
    fn create_secret_writes_one_tuple() {
        run("SELECT vault.create_secret('only once', 'once')");
        // One insert, no update: no dead tuple and no plaintext version ever written.
        let (ins, upd): (Option<i64>, Option<i64>) = Spi::get_two(
            "SELECT n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'vault.secrets'::regclass",
        )
        .unwrap();
        assert_eq!((ins, upd), (Some(1), Some(0)));
    }

    #[pg_test]
    fn direct_insert_and_update_encrypt() {
        run("INSERT INTO vault.secrets (name, secret) VALUES ('direct', 'plain-direct')");
        let stored: String = one("SELECT secret FROM vault.secrets WHERE name = 'direct'");
        assert_ne!(stored, "plain-direct");
        let n1: Vec<u8> = one("SELECT nonce FROM vault.secrets WHERE name = 'direct'");
        run("UPDATE vault.secrets SET secret = 'plain-updated' WHERE name = 'direct'");
        let n2: Vec<u8> = one("SELECT nonce FROM vault.secrets WHERE name = 'direct'");
        assert_ne!(n1, n2, "re-encryption uses a fresh nonce");
        let v: String = one("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'direct'");
        assert_eq!(v, "plain-updated");
        // Metadata-only updates leave the ciphertext alone.
        run("UPDATE vault.secrets SET description = 'd' WHERE name = 'direct'");
        let n3: Vec<u8> = one("SELECT nonce FROM vault.secrets WHERE name = 'direct'");
        assert_eq!(n2, n3);
    }

    #[pg_test]
    fn ciphertext_with_nonce_is_stored_as_is() {
        run("SELECT vault.create_secret('moving', 'src')");
        run("CREATE TEMP TABLE saved AS SELECT id, secret, nonce FROM vault.secrets WHERE name = 'src'");
        run("DELETE FROM vault.secrets WHERE name = 'src'");
        run("INSERT INTO vault.secrets (id, name, secret, nonce) SELECT id, 'restored', secret, nonce FROM saved");
        let same: bool = one("SELECT s.secret = saved.secret FROM vault.secrets s JOIN saved USING (id)");
        assert!(same);
        let v: String = one("SELECT vault.read_secret('restored')");
        assert_eq!(v, "moving");
    }

    #[pg_test]
    fn update_secret_changes_only_what_is_given() {
        let id: pgrx::Uuid = one("SELECT vault.create_secret('v1', 'n1', 'd1')");
        // The whole test is one transaction, where now() does not move: date the row back an
        // hour so the update has to set updated_at for the check below to pass.
        run(&format!(
            "UPDATE vault.secrets SET created_at = now() - interval '1 hour', \
             updated_at = now() - interval '1 hour' WHERE id = '{id}'"
        ));
        let q = format!("SELECT vault.update_secret('{id}', new_description => 'd2')");
        run(&q);
        let row: String = one(&format!(
            "SELECT concat_ws(',', name, description, decrypted_secret) FROM vault.decrypted_secrets WHERE id = '{id}'"
        ));
        assert_eq!(row, "n1,d2,v1");
        run(&format!("SELECT vault.update_secret('{id}', 'v2', 'n2')"));
        let row: String = one(&format!(
            "SELECT concat_ws(',', name, description, decrypted_secret) FROM vault.decrypted_secrets WHERE id = '{id}'"
        ));
        assert_eq!(row, "n2,d2,v2");
        let stamps: String = one(&format!(
            "SELECT (updated_at = now()) || ',' || (created_at = now() - interval '1 hour') \
             FROM vault.secrets WHERE id = '{id}'"
        ));
        assert_eq!(stamps, "true,true", "updated_at set to now(), created_at kept");
    }

    #[pg_test]
    fn secrets_follow_their_key() {
        let k: pgrx::Uuid = one("SELECT vault.create_key('second')");
        let ietf: pgrx::Uuid = one("SELECT vault.create_key('ietf', 'aead-ietf')");
        let nums: String = one("SELECT string_agg(key_id::text, ',' ORDER BY key_id) FROM vault.keys");
        assert_eq!(nums, "0,1,2");
        let a: pgrx::Uuid = one(&format!("SELECT vault.create_secret('on second', 'a', '', '{k}')"));
        let b: pgrx::Uuid = one(&format!("SELECT vault.create_secret('on ietf', 'b', '', '{ietf}')"));
        let c: pgrx::Uuid = one("SELECT vault.create_secret('on default', 'c')");
        let kid: pgrx::Uuid = one(&format!("SELECT key_id FROM vault.secrets WHERE id = '{a}'"));
        assert_eq!(kid, k);
        let nlen: i32 = one(&format!("SELECT length(nonce) FROM vault.secrets WHERE id = '{b}'"));
        assert_eq!(nlen, 24);
        let compat: bool = one(&format!("SELECT key_id IS NULL FROM vault.secrets WHERE id = '{c}'"));
        assert!(compat, "the compatibility key is stored as NULL, as in supabase_vault");
        let all: String = one("SELECT string_agg(decrypted_secret, ',' ORDER BY name) FROM vault.decrypted_secrets");
        assert_eq!(all, "on second,on ietf,on default");
        // Moving a secret to another key re-encrypts it there.
        run(&format!("SELECT vault.update_secret('{c}', new_key_id => '{ietf}')"));
        let v: String = one(&format!(
            "SELECT decrypted_secret || length(nonce) FROM vault.decrypted_secrets WHERE id = '{c}'"
        ));
        assert_eq!(v, "on default24");
    }

    #[pg_test(error = "vault key 11111111-1111-1111-1111-111111111111 does not exist")]
    fn unknown_key_is_refused() {
        run("SELECT vault.create_secret('x', NULL, '', '11111111-1111-1111-1111-111111111111')");
    }

    #[pg_test(
        error = "ciphertext of secret 22222222-2222-2222-2222-222222222222 does not decrypt with key 00000000-0000-0000-0000-000000000000 for this row"
    )]
    fn tampered_ciphertext_is_refused() {
        run("INSERT INTO vault.secrets (id, secret) VALUES ('22222222-2222-2222-2222-222222222222', 'abc')");
        run("CREATE TEMP TABLE saved AS SELECT * FROM vault.secrets");
        run("DELETE FROM vault.secrets");
        // Re-insert with one ciphertext bit flipped: a row with a nonce must decrypt for its id
        // (read-time detection of damaged storage is in pg_regress api.sql and rotation.sql).
        run("INSERT INTO vault.secrets (id, secret, nonce) SELECT id, \
             encode(set_byte(decode(secret, 'base64'), 0, get_byte(decode(secret, 'base64'), 0) # 1), 'base64'), nonce FROM saved");
    }

    #[pg_test(error = "the nonce of secret 33333333-3333-3333-3333-333333333333 cannot change without its ciphertext")]
    fn nonce_cannot_change_alone() {
        run("INSERT INTO vault.secrets (id, secret) VALUES ('33333333-3333-3333-3333-333333333333', 'abc')");
        run("UPDATE vault.secrets SET nonce = '\\x00000000000000000000000000000000'");
    }

    #[pg_test]
    fn changing_the_id_re_encrypts() {
        run("INSERT INTO vault.secrets (id, secret) VALUES ('44444444-4444-4444-4444-444444444444', 'follows')");
        run("UPDATE vault.secrets SET id = '55555555-5555-5555-5555-555555555555'");
        let v: String = one(
            "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE id = '55555555-5555-5555-5555-555555555555'",
        );
        assert_eq!(v, "follows");
    }
}
