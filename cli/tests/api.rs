//! The HTTP API of `pgvault serve`, in process: the router is built here (as `pgvault serve`
//! builds it) and sent requests without a network, against a real cluster that
//! tests/api_cluster.sh starts (its socket directory, port and the roles' password come in
//! PGVAULT_TEST_*). Routes by role, sessions, CSRF, tokens, the error table, and the contract
//! between the server and the HTTPS client (remote.rs) over a real TLS listener.
//!
//! Run: tests/api_cluster.sh (`cargo test -p pgvault --features cluster-tests --test api`).

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use clap::Parser;
use pgvault::commands::serve::Serve;
use pgvault::remote::{self, Fetched};
use pgvault::Kind;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tower::ServiceExt;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run tests/api_cluster.sh"))
}

fn password() -> String {
    env("PGVAULT_TEST_PASSWORD")
}

/// Connection settings for `user` with the test password (the server's own: authenticator).
fn target(user: &str) -> pgvault::conn::Target {
    let dsn = format!(
        "host={} port={} dbname=postgres user={user} password={}",
        env("PGVAULT_TEST_HOST"),
        env("PGVAULT_TEST_PORT"),
        password()
    );
    pgvault::conn::resolve(Some(&dsn), &|_| None).expect("test settings")
}

/// Statements as the superuser (trusted on the socket), off the async threads; the first
/// column of each row as text.
fn sql(statements: &str) -> Vec<Option<String>> {
    let dsn = format!(
        "host={} port={} dbname=postgres user=postgres",
        env("PGVAULT_TEST_HOST"),
        env("PGVAULT_TEST_PORT")
    );
    let statements = statements.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&dsn, postgres::NoTls).expect("superuser connection");
        let mut out = Vec::new();
        for m in c.simple_query(&statements).expect("setup statements") {
            if let postgres::SimpleQueryMessage::Row(r) = m {
                out.push(r.get(0).map(str::to_string));
            }
        }
        out
    })
    .join()
    .expect("sql thread")
}

/// Tests that count authenticator_logged's lines in the server log run one at a time.
static LOGGED_ROLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sql_one(statement: &str) -> String {
    sql(statement).pop().flatten().unwrap_or_default()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    fn sqlstate(&self) -> String {
        self.json()["sqlstate"].as_str().unwrap_or_default().to_string()
    }
}

/// A logged-in browser: its cookie and CSRF token.
#[derive(Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

struct Api {
    router: Router,
}

impl Api {
    /// The router `pgvault serve ARGS` serves, with the server's own role `authenticator`.
    fn new(args: &[&str]) -> Api {
        Api::as_role("authenticator", args)
    }

    /// The same with another role as the server's own.
    fn as_role(role: &str, args: &[&str]) -> Api {
        let argv = std::iter::once("serve").chain(args.iter().copied());
        let serve = Serve::try_parse_from(argv).expect("serve arguments");
        Api {
            router: pgvault::serve::router_with(&target(role), &serve),
        }
    }

    async fn send(&self, mut req: Request<Body>) -> Reply {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let resp = self.router.clone().oneshot(req).await.expect("infallible router");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .expect("body")
            .to_vec();
        Reply { status, headers, body }
    }

    /// METHOD PATH as `who` (cookie and CSRF token), with a JSON body when given.
    async fn call(&self, who: Option<&Login>, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(l) = who {
            b = b.header(header::COOKIE, &l.cookie).header("x-csrf-token", &l.csrf);
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    /// The same with a Bearer token.
    async fn bearer(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    async fn try_login(&self, user: &str, pw: &str) -> Reply {
        self.call(
            None,
            Method::POST,
            "/api/v1/session",
            Some(json!({"user": user, "password": pw})),
        )
        .await
    }

    async fn login(&self, user: &str) -> Login {
        let r = self.try_login(user, &password()).await;
        assert_eq!(r.status, StatusCode::OK, "login {user}: {}", r.text());
        let cookie = r.header("set-cookie");
        let cookie = cookie.split(';').next().unwrap().to_string();
        let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
        Login { cookie, csrf }
    }
}

/// Every refusal names a SQLSTATE whose status in the one table is the status sent.
fn assert_mapped(r: &Reply, what: &str) {
    let code = r.sqlstate();
    if !code.is_empty() {
        assert_eq!(
            r.status.as_u16(),
            Kind::of_sqlstate(&code).http_status(),
            "{what}: {code} answered {}",
            r.status
        );
    }
}

fn create_secret(name: &str, value: &str) {
    sql(&format!(
        "SELECT vault.create_secret('{value}', '{name}', 'made by the api tests', NULL, ARRAY['api'])"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_the_page_and_on_api_errors() {
    let api = Api::new(&[]);
    let page = api.call(None, Method::GET, "/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("<title>pgvault</title>"));
    assert!(page.header("content-security-policy").contains("script-src 'self'"));
    let err = api.call(None, Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(err.status, StatusCode::UNAUTHORIZED, "the API without a session");
    for r in [&page, &err] {
        assert_eq!(r.header("x-content-type-options"), "nosniff");
        assert_eq!(r.header("referrer-policy"), "no-referrer");
        assert!(r.header("strict-transport-security").contains("max-age="));
    }
    assert_eq!(err.header("cache-control"), "no-store");
    assert_eq!(err.header("content-type"), "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_role_get_one_answer() {
    let api = Api::new(&[]);
    let wrong = api.try_login("api_admin", "wrong-password").await;
    let unknown = api.try_login("api_no_such_role", &password()).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!((unknown.status, unknown.text()), (wrong.status, wrong.text()));
    assert_eq!(
        wrong.json(),
        json!({"error": "wrong user or password", "sqlstate": "28P01"})
    );
    assert_mapped(&wrong, "wrong password");
    let ok = api.try_login("api_admin", &password()).await;
    assert_eq!(ok.status, StatusCode::OK);
    let cookie = ok.header("set-cookie");
    assert!(
        cookie.ends_with("; HttpOnly; Secure; SameSite=Strict; Path=/"),
        "{cookie}"
    );
    let id = cookie.split(';').next().unwrap().trim_start_matches("pgvault_session=");
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "256-bit id"
    );
    let body = ok.json();
    assert_eq!(body["user"], "api_admin");
    assert_eq!(body["csrf_token"].as_str().map(str::len), Some(64));
    assert_eq!(body["rights"]["admin"], true);
}

/// Every route for every role: the status (and that refusals follow the one table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role() {
    let value = "route-role-value-0123456789";
    create_secret("rr_secret", value);
    let api = Api::new(&[]);
    let roles = ["api_admin", "api_reader", "api_viewer", "api_nobody"];
    let mut logins = Vec::new();
    for r in roles {
        logins.push(api.login(r).await);
    }
    // (method, path, body, expected status for admin, reader, viewer, nobody)
    let routes: Vec<(Method, &str, Option<Value>, [u16; 4])> = vec![
        (Method::GET, "/api/v1/session", None, [200, 200, 200, 200]),
        (Method::GET, "/api/v1/secrets", None, [200, 200, 200, 403]),
        (Method::GET, "/api/v1/secrets?tag=api", None, [200, 200, 200, 403]),
        (Method::GET, "/api/v1/secrets/rr_secret", None, [200, 200, 403, 403]),
        (
            Method::GET,
            "/api/v1/secrets/rr_secret/versions",
            None,
            [200, 403, 403, 403],
        ),
        (
            Method::GET,
            "/api/v1/secrets/rr_secret/grants",
            None,
            [200, 403, 403, 403],
        ),
        (Method::GET, "/api/v1/audit", None, [200, 403, 403, 403]),
        (Method::GET, "/api/v1/keys", None, [200, 403, 403, 403]),
        (Method::GET, "/api/v1/verify", None, [200, 403, 403, 403]),
        (
            Method::POST,
            "/api/v1/secrets/rr_secret/rollback",
            Some(json!({"version": 1})),
            [404, 403, 403, 403],
        ),
        (
            Method::PUT,
            "/api/v1/secrets/rr_secret",
            Some(json!({"value": "route-role-overwrite"})),
            [200, 403, 403, 403],
        ),
        (
            Method::PUT,
            "/api/v1/secrets/rr_secret/grants/api_granted",
            None,
            [204, 403, 403, 403],
        ),
        (
            Method::DELETE,
            "/api/v1/secrets/rr_secret/grants/api_granted",
            None,
            [204, 403, 403, 403],
        ),
    ];
    for (method, path, body, expected) in &routes {
        // The admin last: its changes must not turn the others' refusals into 404s.
        for i in [1, 2, 3, 0] {
            let r = api.call(Some(&logins[i]), method.clone(), path, body.clone()).await;
            assert_eq!(
                r.status.as_u16(),
                expected[i],
                "{method} {path} as {}: {}",
                roles[i],
                r.text()
            );
            if !r.status.is_success() {
                assert_mapped(&r, path);
                assert!(!r.text().contains(value), "a refusal carries no value");
            }
            if r.status == StatusCode::FORBIDDEN {
                assert_eq!(r.sqlstate(), "42501", "{method} {path} as {}", roles[i]);
            }
        }
    }
    // Nothing the refused roles tried changed anything.
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.audit_log WHERE secret_name = 'rr_secret' AND session_role::text <> 'api_admin' AND action <> 'create'"),
        "0"
    );
    for i in [1, 2, 3] {
        let name = format!("rr_new_{i}");
        let r = api
            .call(
                Some(&logins[i]),
                Method::PUT,
                &format!("/api/v1/secrets/{name}"),
                Some(json!({"value": "new-value-by-role"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "PUT of a new secret as {}", roles[i]);
        let r = api
            .call(Some(&logins[i]), Method::DELETE, "/api/v1/secrets/rr_secret", None)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "DELETE as {}", roles[i]);
    }
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.secrets WHERE name LIKE 'rr_new_%'"),
        "0"
    );
    let r = api
        .call(Some(&logins[0]), Method::DELETE, "/api/v1/secrets/rr_secret", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api
        .call(Some(&logins[0]), Method::DELETE, "/api/v1/secrets/rr_secret", None)
        .await;
    assert_eq!((r.status, r.sqlstate().as_str()), (StatusCode::NOT_FOUND, "P0002"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_follow_the_one_error_table() {
    create_secret("et_secret", "error-table-value-0123456789");
    let api = Api::new(&[]);
    let admin = api.login("api_admin").await;
    let reader = api.login("api_reader").await;
    let cases = [
        (
            &reader,
            Method::GET,
            "/api/v1/secrets/et_no_such_secret",
            None,
            404,
            "P0002",
        ),
        (
            &admin,
            Method::PUT,
            "/api/v1/secrets/et_secret/grants/no_such_role",
            None,
            400,
            "42704",
        ),
        (
            &admin,
            Method::PUT,
            "/api/v1/secrets/et_secret",
            Some(json!({"value": "stale-write", "expected_version": 99})),
            409,
            "40001",
        ),
        (
            &admin,
            Method::PUT,
            "/api/v1/secrets/et_when_bad",
            Some(json!({"value": "x-value-when-bad", "expires_at": "not a date"})),
            400,
            "22007",
        ),
        (&reader, Method::GET, "/api/v1/keys", None, 403, "42501"),
        (&admin, Method::GET, "/api/v1/audit?limit=abc", None, 400, "22023"),
    ];
    for (who, method, path, body, status, sqlstate) in cases {
        let r = api.call(Some(who), method.clone(), path, body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.text());
        assert_eq!(&r.sqlstate()[..2], &sqlstate[..2], "{method} {path}");
        assert_mapped(&r, path);
        assert!(!r.text().contains("error-table-value"), "no value in a refusal");
    }
    let r = api.call(Some(&reader), Method::GET, "/api/v1/keys", None).await;
    assert!(r.json()["hint"]
        .as_str()
        .unwrap_or_default()
        .contains("keys and verify vault_admin"));
    let r = api.call(Some(&admin), Method::POST, "/api/v1/verify", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "verify is a GET only");
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.secrets WHERE name = 'et_when_bad'"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_csrf_token_with_a_cookie() {
    let api = Api::new(&[]);
    let admin = api.login("api_admin").await;
    let no_token = Login {
        cookie: admin.cookie.clone(),
        csrf: String::new(),
    };
    let wrong = Login {
        cookie: admin.cookie.clone(),
        csrf: "wrong-token-0000".into(),
    };
    for (who, what) in [(&no_token, "no"), (&wrong, "a wrong")] {
        let r = api
            .call(
                Some(who),
                Method::PUT,
                "/api/v1/secrets/csrf_try",
                Some(json!({"value": "csrf-value-1234"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "PUT with {what} X-CSRF-Token");
    }
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.secrets WHERE name = 'csrf_try'"),
        "0"
    );
    // A cross-site form: the cookie, no token, a form body.
    let form = |csrf: Option<&str>| {
        let mut b = Request::builder()
            .method(Method::PUT)
            .uri("/api/v1/secrets/csrf_form")
            .header(header::COOKIE, &admin.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(t) = csrf {
            b = b.header("x-csrf-token", t);
        }
        b.body(Body::from("value=form-value")).unwrap()
    };
    assert_eq!(api.send(form(None)).await.status, StatusCode::FORBIDDEN);
    let r = api.send(form(Some(&admin.csrf))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a form body even with the token");
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.secrets WHERE name = 'csrf_form'"),
        "0"
    );
    let r = api
        .call(
            Some(&admin),
            Method::PUT,
            "/api/v1/secrets/csrf_ok",
            Some(json!({"value": "csrf-ok-value-1234"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "with the token: {}", r.text());
    assert_eq!(r.json()["name"], "csrf_ok");
    assert!(r.json().get("value").is_none(), "the answer has no value");
    let created = r.json()["created_at"].clone();
    assert!(
        created.as_str().is_some_and(|s| s.starts_with("20")),
        "created_at: {created}"
    );
    let got = api
        .call(Some(&admin), Method::GET, "/api/v1/secrets/csrf_ok", None)
        .await;
    assert_eq!(
        got.json()["created_at"],
        created,
        "GET of one secret: the same created_at"
    );
    let list = api.call(Some(&admin), Method::GET, "/api/v1/secrets", None).await;
    let listed = list
        .json()
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "csrf_ok").cloned());
    assert_eq!(listed.map(|s| s["created_at"].clone()), Some(created), "and the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_failed_logins_are_limited() {
    let api = Api::new(&["--idle-timeout", "1", "--max-login-failures", "3"]);
    let reader = api.login("api_reader").await;
    let r = api.call(Some(&reader), Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(r.status, StatusCode::OK, "a fresh session works");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = api.call(Some(&reader), Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "an idle session expires");
    for i in 1..=3 {
        let r = api.try_login("api_admin", &format!("wrong-{i}")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "wrong password {i}");
    }
    let r = api.try_login("api_admin", &password()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "then even the right password");
    assert!(r.text().contains("too many failed logins"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session() {
    let api = Api::new(&[]);
    let viewer = api.login("api_viewer").await;
    let r = api.call(Some(&viewer), Method::DELETE, "/api/v1/session", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("set-cookie").contains("Max-Age=0"));
    let r = api.call(Some(&viewer), Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the old session id is dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_act_as_their_role() {
    let value = "token-route-value-0123456789";
    create_secret("tk_secret", value);
    let reader = sql_one("SELECT vault.create_api_token('api-tk-reader', 'tok_reader')");
    let viewer = sql_one("SELECT vault.create_api_token('api-tk-viewer', 'tok_viewer')");
    let admin = sql_one("SELECT vault.create_api_token('api-tk-admin', 'tok_admin')");
    let outside = sql_one("SELECT vault.create_api_token('api-tk-outside', 'tok_outside')");
    let revoked = sql_one("SELECT vault.create_api_token('api-tk-revoked', 'tok_reader')");
    sql("SELECT vault.revoke_api_token('api-tk-revoked')");
    let api = Api::new(&[]);

    // A reader token reads a value: no cookie, no CSRF header.
    let r = api
        .bearer(&reader, Method::GET, "/api/v1/secrets/tk_secret", None)
        .await;
    assert_eq!((r.status, r.json()["value"].as_str()), (StatusCode::OK, Some(value)));
    assert_eq!(r.header("cache-control"), "no-store");
    let r = api.bearer(&reader, Method::GET, "/api/v1/session", None).await;
    let me = r.json();
    assert_eq!(
        (&me["user"], &me["token"], &me["rights"]["read"], &me["rights"]["admin"]),
        (&json!("tok_reader"), &json!(true), &json!(true), &json!(false)),
        "the token's role and rights"
    );
    // A viewer token: masks, no values.
    let r = api.bearer(&viewer, Method::GET, "/api/v1/secrets?tag=api", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let mine = r
        .json()
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "tk_secret").cloned());
    assert_eq!(mine.map(|s| s["masked"].clone()), Some(json!("toke****6789")));
    assert!(!r.text().contains(value), "a list carries no value");
    let r = api
        .bearer(&viewer, Method::GET, "/api/v1/secrets/tk_secret", None)
        .await;
    assert_eq!((r.status, r.sqlstate().as_str()), (StatusCode::FORBIDDEN, "42501"));
    // A reader token cannot write; an admin token writes without any CSRF header.
    let r = api
        .bearer(
            &reader,
            Method::PUT,
            "/api/v1/secrets/tk_reader_write",
            Some(json!({"value": "reader-write-value"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.secrets WHERE name = 'tk_reader_write'"),
        "0"
    );
    let r = api
        .bearer(
            &admin,
            Method::PUT,
            "/api/v1/secrets/tk_by_token",
            Some(json!({"value": "by-token-value-1234"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        sql_one("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'tk_by_token'"),
        "by-token-value-1234"
    );
    assert_eq!(
        sql_one("SELECT session_role::text || ' ' || \"current_role\"::text FROM vault.audit_log WHERE action = 'create' AND secret_name = 'tk_by_token'"),
        "authenticator tok_admin",
        "the audit log names the token's role, and the server's as the session"
    );
    let r = api.bearer(&admin, Method::GET, "/api/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::OK, "an admin token reads the audit log");
    // Refusals.
    let r = api
        .bearer(&outside, Method::GET, "/api/v1/secrets/tk_secret", None)
        .await;
    assert_eq!(
        (r.status, r.sqlstate().as_str()),
        (StatusCode::FORBIDDEN, "42501"),
        "a role the server may not become"
    );
    assert!(r.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("GRANT \"tok_outside\" TO \"authenticator\""));
    let none = api.call(None, Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "no credentials");
    let unknown = api
        .bearer(
            "pgv_not_a_real_token_0123456789abcdefghijklmn",
            Method::GET,
            "/api/v1/secrets",
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.text(),
        r#"{"error":"invalid token: unknown, expired or revoked","sqlstate":null}"#
    );
    for bad in [revoked.clone(), format!("{reader}x"), "x".to_string()] {
        let r = api.bearer(&bad, Method::GET, "/api/v1/secrets/tk_secret", None).await;
        assert_eq!(
            (r.status, r.text()),
            (StatusCode::UNAUTHORIZED, unknown.text()),
            "token {bad:.8}..."
        );
    }
    let basic = Request::builder()
        .uri("/api/v1/secrets")
        .header(header::AUTHORIZATION, "Basic YTpiCg==")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(basic).await.status, StatusCode::UNAUTHORIZED, "another scheme");
    // A cookie and a token together: neither is guessed at, nothing is created.
    let browser = api.login("api_admin").await;
    let both = Request::builder()
        .method(Method::PUT)
        .uri("/api/v1/secrets/tk_both_ways")
        .header(header::COOKIE, &browser.cookie)
        .header("x-csrf-token", &browser.csrf)
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"value": "both-ways-value"}"#))
        .unwrap();
    assert_eq!(api.send(both).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        sql_one("SELECT count(*) FROM vault.secrets WHERE name = 'tk_both_ways'"),
        "0"
    );
    let two = Request::builder()
        .uri("/api/v1/secrets")
        .header(header::AUTHORIZATION, format!("Bearer {reader}"))
        .header(header::AUTHORIZATION, "Bearer other")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        api.send(two).await.status,
        StatusCode::UNAUTHORIZED,
        "two Authorization headers"
    );
}

/// The server's answers as the HTTPS client reads them: remote.rs against the router served
/// with TLS on 127.0.0.1, each outcome with the exit code of the one table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_client_reads_what_the_server_sends() {
    create_secret("rc_secret", "remote-contract-value-0123");
    create_secret("rc_narrowed", "remote-narrowed-value-0123");
    sql("SELECT vault.grant_secret(id, 'api_granted') FROM vault.secrets WHERE name = 'rc_narrowed'");
    let reader = sql_one("SELECT vault.create_api_token('api-rc-reader', 'tok_reader')");
    let viewer = sql_one("SELECT vault.create_api_token('api-rc-viewer', 'tok_viewer')");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let config =
        axum_server::tls_rustls::RustlsConfig::from_pem_file(env("PGVAULT_TEST_CERT"), env("PGVAULT_TEST_KEY"))
            .await
            .expect("test certificate");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let api = Api::new(&[]);
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, config)
        .expect("listener")
        .handle(handle.clone())
        .serve(api.router.clone().into_make_service_with_connect_info::<SocketAddr>());
    tokio::spawn(server);

    let ca = std::path::PathBuf::from(env("PGVAULT_TEST_CA"));
    let result = tokio::task::spawn_blocking(move || {
        let open = |token: &str| {
            // Only this test reads PGVAULT_TOKEN (remote.rs reads it when opening).
            std::env::set_var("PGVAULT_TOKEN", token);
            remote::open(Some(&url), Some(&ca)).expect("open").expect("a server")
        };
        let r = open(&reader);
        r.may_read().expect("a reader token may read");
        let names: Vec<String> = r
            .list(&["api".into()])
            .unwrap()
            .into_iter()
            .filter_map(|l| l.name)
            .collect();
        assert!(names.contains(&"rc_secret".to_string()) && names.contains(&"rc_narrowed".to_string()));
        assert!(names.windows(2).all(|w| w[0] <= w[1]), "by name: {names:?}");
        match r.value("rc_secret").unwrap() {
            Fetched::Value(v) => assert_eq!(v.as_str(), "remote-contract-value-0123"),
            _ => panic!("rc_secret: no value"),
        }
        assert!(matches!(r.value("rc_narrowed").unwrap(), Fetched::NotGranted));
        assert!(matches!(r.value("rc_no_such").unwrap(), Fetched::NotFound));
        let v = open(&viewer);
        assert_eq!(
            v.may_read().unwrap_err().code(),
            Kind::Denied.exit_code(),
            "a viewer token"
        );
        let bad = open("pgv_not_a_real_token");
        let f = bad.may_read().unwrap_err();
        assert_eq!(
            f.code(),
            Kind::Unauthenticated.exit_code(),
            "an unknown token: {}",
            f.message()
        );
        assert!(f.message().contains("PGVAULT_TOKEN"));
    })
    .await;
    handle.shutdown();
    result.expect("remote checks");
}

/// A token request: the check and the role switch in one statement, and, when it ended with
/// its transaction, no `DISCARD ALL` before the connection's next request (seen in the log of
/// a server role whose statements are all logged); the next requests still act as the token's
/// role and nothing lingers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_checks_and_switches_in_one_statement_and_skips_the_reset() {
    let _log = LOGGED_ROLE.lock().await;
    create_secret("rt_secret", "round-trip-value-0123456789");
    let token = sql_one("SELECT vault.create_api_token('api-rt-reader', 'tok_reader')");
    let api = Api::as_role("authenticator_logged", &["--token-connections", "1"]);
    let log = env("PGVAULT_TEST_LOG");
    let mark = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    for _ in 0..3 {
        let r = api.bearer(&token, Method::GET, "/api/v1/secrets/rt_secret", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = api.bearer(&token, Method::GET, "/api/v1/session", None).await;
        assert_eq!(r.json()["user"], "tok_reader");
    }
    // A refused request (a stale expected_version) ends with ROLLBACK: still no reset needed.
    let r = api
        .bearer(&token, Method::GET, "/api/v1/secrets/rt_no_such", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.bearer(&token, Method::GET, "/api/v1/secrets/rt_secret", None).await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read(&log).expect("server log");
    let text = String::from_utf8_lossy(&text[mark.min(text.len())..]).into_owned();
    let mine: Vec<&str> = text.lines().filter(|l| l.contains(" authenticator_logged ")).collect();
    let count = |what: &str| mine.iter().filter(|l| l.contains(what)).count();
    assert_eq!(
        count("vault.api_token_role"),
        8,
        "one check per request:\n{}",
        mine.join("\n")
    );
    assert_eq!(
        count("pg_catalog.set_config("),
        8,
        "the switch is in the check's statement:\n{}",
        mine.join("\n")
    );
    assert_eq!(count("SET LOCAL ROLE"), 0, "no separate round trip for the switch");
    assert_eq!(
        count("DISCARD ALL"),
        0,
        "no reset after requests that ended with their transaction"
    );
}

/// The token path keeps its statements prepared on its pooled connection: the value's GET is
/// parsed once and then only executed, under one statement name, request after request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_connection_keeps_its_prepared_statements() {
    let _log = LOGGED_ROLE.lock().await;
    create_secret("prep_secret", "prepared-value-0123456789");
    let token = sql_one("SELECT vault.create_api_token('api-prep-reader', 'tok_reader')");
    let api = Api::as_role("authenticator_logged", &["--token-connections", "1"]);
    let log = env("PGVAULT_TEST_LOG");
    let mark = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    for _ in 0..4 {
        let r = api
            .bearer(&token, Method::GET, "/api/v1/secrets/prep_secret", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read(&log).expect("server log");
    let text = String::from_utf8_lossy(&text[mark.min(text.len())..]).into_owned();
    // "LOG:  execute s3: SELECT d.v, ..." for each GET: the name after "execute".
    let names: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" authenticator_logged ") && l.contains("FROM vault.decrypted_secrets s WHERE"))
        .filter_map(|l| l.split("execute ").nth(1)?.split(':').next())
        .collect();
    assert_eq!(names.len(), 4, "one execution per GET:\n{text}");
    assert!(
        names.iter().all(|n| *n == names[0] && *n != "<unnamed>"),
        "one prepared statement for every GET: {names:?}"
    );
}

/// A request whose client went away half way (its future dropped inside its transaction)
/// leaves nothing behind: the connection is rolled back before its next request, on the
/// token pool and on a session alike, and what the request did is not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_half_way_is_rolled_back_before_the_connection_is_reused() {
    let before = "value-before-the-dropped-put";
    create_secret("dropped_put", before);
    let token = sql_one("SELECT vault.create_api_token('api-drop-admin', 'tok_admin')");
    let api = Api::new(&["--token-connections", "1", "--session-connections", "1"]);
    let admin = api.login("api_admin").await;
    let path = "/api/v1/secrets/dropped_put";
    for by_token in [true, false] {
        // A superuser transaction holds the secret's row: the PUT waits in its FOR UPDATE,
        // after its BEGIN (and, for the token, its SET LOCAL ROLE).
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let dsn = format!(
            "host={} port={} dbname=postgres user=postgres",
            env("PGVAULT_TEST_HOST"),
            env("PGVAULT_TEST_PORT")
        );
        let holder = std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&dsn, postgres::NoTls).expect("superuser connection");
            let mut tx = c.transaction().unwrap();
            tx.query("SELECT 1 FROM vault.secrets WHERE name = 'dropped_put' FOR UPDATE", &[])
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.recv();
            tx.commit().unwrap();
        });
        locked.recv().unwrap();
        let body = Some(json!({"value": "written-by-a-dropped-request", "description": "dropped"}));
        let put = async {
            if by_token {
                api.bearer(&token, Method::PUT, path, body).await
            } else {
                api.call(Some(&admin), Method::PUT, path, body).await
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(700), put).await.is_err(),
            "the PUT waits for the row lock (by_token {by_token})"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        let r = if by_token {
            api.bearer(&token, Method::GET, path, None).await
        } else {
            api.call(Some(&admin), Method::GET, path, None).await
        };
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the next request (by_token {by_token}): {}",
            r.text()
        );
        assert_eq!(r.json()["value"], before);
        assert_eq!(r.json()["description"], "made by the api tests");
        let who = if by_token { "authenticator" } else { "api_admin" };
        assert_eq!(
            sql_one(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{who}' AND state LIKE 'idle in transaction%'"
            )),
            "0",
            "no transaction left open on {who}'s connection"
        );
    }
}
