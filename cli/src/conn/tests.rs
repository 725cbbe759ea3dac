//! libpq's rules: precedence, URLs, pgpass, service files.

use super::*;
use std::collections::HashMap;
use std::fs;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

fn eps(t: &Target) -> Vec<(String, u16)> {
    t.endpoints().unwrap().into_iter().map(|e| (e.host, e.port)).collect()
}

#[test]
fn dsn_wins_and_the_environment_fills_the_gaps() {
    let env = env_of(&[
        ("PGHOST", "/tmp/sock"),
        ("PGPORT", "5499"),
        ("PGUSER", "alice"),
        ("PGPASSWORD", "pw"),
    ]);
    let t = resolve(None, &env).unwrap();
    assert_eq!(eps(&t), [("/tmp/sock".to_string(), 5499)]);
    assert_eq!((t.user(), t.dbname()), ("alice", "alice"));
    assert!(!describe(&t).contains("pw"));

    let t = resolve(Some("postgresql://bob@db.example:6000/app"), &env).unwrap();
    assert_eq!(eps(&t), [("db.example".to_string(), 6000)]);
    assert_eq!((t.user(), t.dbname()), ("bob", "app"));

    let env2 = env_of(&[
        ("DATABASE_URL", "host=/run/x dbname=d"),
        ("PGUSER", "alice"),
        ("PGPORT", "5499"),
    ]);
    let t = resolve(None, &env2).unwrap();
    assert_eq!(eps(&t), [("/run/x".to_string(), 5499)]);
    assert_eq!((t.user(), t.dbname()), ("alice", "d"));

    assert!(resolve(Some("host=/x"), &env_of(&[("PGPORT", "nope")])).is_err());
    assert!(resolve(Some("host=/x port=notaport"), &env_of(&[])).is_err());
}

#[test]
fn urls_and_pairs_carry_the_tls_settings() {
    let p = parse_conninfo(
        "postgresql://u:p%40ss@h1:5433,[::1]:5434/db?sslmode=verify-full&sslrootcert=%2Fca%20dir%2Froot.crt",
    )
    .unwrap();
    assert_eq!(p["user"], "u");
    assert_eq!(p["password"], "p@ss");
    assert_eq!(p["host"], "h1,::1");
    assert_eq!(p["port"], "5433,5434");
    assert_eq!(p["dbname"], "db");
    assert_eq!(p["sslmode"], "verify-full");
    assert_eq!(p["sslrootcert"], "/ca dir/root.crt");
    let p = parse_conninfo("host=h sslmode = require  sslcert='/a b/c\\'s.crt' sslkey=/k").unwrap();
    assert_eq!(p["sslmode"], "require");
    assert_eq!(p["sslcert"], "/a b/c's.crt");
    assert_eq!(p["sslkey"], "/k");
    assert_eq!(parse_conninfo("postgres:///d?ssl=true").unwrap()["sslmode"], "require");
    assert_eq!(parse_conninfo("mydb").unwrap()["dbname"], "mydb");
    assert!(parse_conninfo("host=h sslmod=require").is_err());
    assert!(parse_conninfo("host='unterminated").is_err());
    // An unknown mode is refused, never treated as a weaker one.
    assert!(resolve(Some("host=h sslmode=verify_full"), &env_of(&[])).is_err());
    // PGSSLMODE applies when the string does not say.
    let t = resolve(Some("host=h"), &env_of(&[("PGSSLMODE", "verify-full")])).unwrap();
    assert_eq!(t.mode().unwrap(), Mode::VerifyFull);
    let t = resolve(Some("host=h sslmode=require"), &env_of(&[("PGSSLMODE", "disable")])).unwrap();
    assert_eq!(t.mode().unwrap(), Mode::Require);
    assert_eq!(
        resolve(Some("host=h"), &env_of(&[])).unwrap().mode().unwrap(),
        Mode::Prefer
    );
    // sslrootcert=system: verify-full, or refused with a weaker mode.
    let t = resolve(Some("host=h sslrootcert=system"), &env_of(&[])).unwrap();
    assert_eq!(t.mode().unwrap(), Mode::VerifyFull);
    assert!(resolve(Some("host=h sslrootcert=system sslmode=require"), &env_of(&[])).is_err());
}

#[test]
fn pgpass_matching_follows_libpq() {
    let text = "# comment\n\
                other:5432:*:*:nope\n\
                db\\:host:*:app:*:escaped\\:pw\\\\\n\
                localhost:5433:*:alice:sock\n\
                *:*:*:alice:any\n";
    let get = |h, p, d, u| pgpass_lookup(text, h, p, d, u).map(|s| s.to_string());
    assert_eq!(get("db:host", 1, "app", "x").as_deref(), Some("escaped:pw\\"));
    assert_eq!(get("localhost", 5433, "d", "alice").as_deref(), Some("sock"));
    assert_eq!(get("elsewhere", 5433, "d", "alice").as_deref(), Some("any"));
    assert_eq!(get("elsewhere", 5433, "d", "bob"), None);
    assert_eq!(get("other", 5432, "d", "bob").as_deref(), Some("nope"));
}

#[test]
fn service_files_fill_what_the_string_leaves_out() {
    let dir = std::env::temp_dir().join(format!("pgvault-svc-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let user = dir.join("user.conf");
    fs::write(
        &user,
        "# mine\n[app]\nhost=db.internal\nport=6543\nsslmode=verify-full\n[other]\nhost=x\n",
    )
    .unwrap();
    fs::write(dir.join("pg_service.conf"), "[sys]\nhost=sys.host\ndbname=sysdb\n").unwrap();
    let sysconf = dir.display().to_string();
    let userfile = user.display().to_string();
    let env = env_of(&[
        ("PGSERVICEFILE", &userfile),
        ("PGSYSCONFDIR", &sysconf),
        ("PGHOST", "env.host"),
    ]);
    let t = resolve(Some("service=app dbname=d"), &env).unwrap();
    assert_eq!(eps(&t), [("db.internal".to_string(), 6543)]);
    assert_eq!((t.dbname(), t.mode().unwrap()), ("d", Mode::VerifyFull));
    // The string wins over the service.
    let t = resolve(Some("service=app host=h2"), &env).unwrap();
    assert_eq!(eps(&t)[0].0, "h2");
    // The system file, and PGSERVICE.
    let env2 = env_of(&[
        ("PGSERVICEFILE", &userfile),
        ("PGSYSCONFDIR", &sysconf),
        ("PGSERVICE", "sys"),
    ]);
    let t = resolve(None, &env2).unwrap();
    assert_eq!((eps(&t)[0].0.as_str(), t.dbname()), ("sys.host", "sysdb"));
    assert!(resolve(Some("service=nope"), &env).is_err());
    fs::write(&user, "[app]\nservice=x\n").unwrap();
    assert!(resolve(Some("service=app"), &env).is_err());
    fs::remove_dir_all(&dir).unwrap();
}
