//! Which secrets `run` puts in the child's environment, under which names.
//!
//! A secret never sets a variable that changes how the child (or anything it starts) is found,
//! loaded or interpreted, unless the user names that variable with --allow-var: anyone who may
//! write a secret could otherwise run code in every process `pgvault run` starts.

use crate::dotenv;
use crate::text::escape;
use std::collections::BTreeMap;

/// The rule (issue 26): a secret never sets a variable that tells a program where to find
/// code, configuration or a helper command to run, where to send its traffic, or which
/// database, host or repository to talk to. A list of names keeps missing variables, so the
/// rule is written as whole families: the exact names below, every name starting with one of
/// `PROTECTED_PREFIXES` and every name ending with one of `PROTECTED_SUFFIXES`, compared
/// without regard to case. A user who means it names the variable with --allow-var.
const PROTECTED: &[&str] = &[
    // where programs, libraries and shells are found, and what a shell runs at start
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "CDPATH",
    "GLOBIGNORE",
    "SHELLOPTS",
    "BASHOPTS",
    "PS1",
    "PS2",
    "PS4",
    "PROMPT_COMMAND",
    "ZDOTDIR",
    "INPUTRC",
    "TMPDIR",
    // interpreters' load paths and start-up code
    "CLASSPATH",
    "GEM_PATH",
    "GEM_HOME",
    "IRBRC",
    "LUA_PATH",
    "LUA_CPATH",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "R_PROFILE",
    "R_PROFILE_USER",
    "R_ENVIRON",
    "R_ENVIRON_USER",
    "EMACSLOADPATH",
    "VIMINIT",
    "EXINIT",
    "MYVIMRC",
    "GVIMINIT",
    // C libraries' data and plug-ins
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    "TERMINFO",
    "TERMINFO_DIRS",
    "TERMCAP",
    "TZDIR",
    // commands other programs start for the user
    "BROWSER",
    "VISUAL",
    "PSQLRC",
    "MANOPT",
    "SUDO_ASKPASS",
    "DISPLAY",
    "XAUTHORITY",
    // trust anchors and configuration files of network clients
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "OPENSSL_CONF",
    "OPENSSL_MODULES",
    "OPENSSL_ENGINES",
    "CURL_CA_BUNDLE",
    "CURL_HOME",
    "REQUESTS_CA_BUNDLE",
    "WGETRC",
    "NETRC",
    "GNUPGHOME",
    "KRB5_CONFIG",
    "KRB5CCNAME",
    "KUBECONFIG",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    // build tools run these as commands
    "CC",
    "CXX",
    "CPP",
    "LD",
    "AR",
    "MAKEFLAGS",
    "MAKEFILES",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "GOFLAGS",
    "CGO_CFLAGS",
    "CGO_LDFLAGS",
    "CFLAGS",
    "CXXFLAGS",
    "LDFLAGS",
    "CPPFLAGS",
    "GOPATH",
    "GOROOT",
    "GOBIN",
    "GOPROXY",
    "GONOPROXY",
    "GOPRIVATE",
    "GOINSECURE",
    "GOSUMDB",
    "GONOSUMDB",
    "GOENV",
    "GOTOOLCHAIN",
    "GOCACHE",
    "GOMODCACHE",
    "GOEXPERIMENT",
    "GODEBUG",
    "GOOS",
    "GOARCH",
    "LANG",
    "LANGUAGE",
    // found by the second review (issue 26): make takes every variable of its environment as a
    // make variable, so its built-in rules' commands and flags run what a secret says; an
    // interactive bash runs PS0; man passes MANROFFOPT to groff; TLS libraries write their keys
    // to SSLKEYLOGFILE; temporary files, history and resolver settings move elsewhere
    "GNUMAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "MAKESHELL",
    "RM",
    "AS",
    "FC",
    "M2C",
    "PC",
    "CO",
    "GET",
    "LEX",
    "YACC",
    "LINT",
    "MAKEINFO",
    "TEX",
    "TEXI2DVI",
    "WEAVE",
    "CWEAVE",
    "TANGLE",
    "CTANGLE",
    "ARFLAGS",
    "ASFLAGS",
    "COFLAGS",
    "FFLAGS",
    "GFLAGS",
    "LDLIBS",
    "LFLAGS",
    "YFLAGS",
    "PFLAGS",
    "RFLAGS",
    "LINTFLAGS",
    "TARGET_ARCH",
    "TARGET_MACH",
    "OUTPUT_OPTION",
    "PS0",
    "PS3",
    "HISTFILE",
    "FCEDIT",
    "MANPATH",
    "MANROFFOPT",
    "MANROFFSEQ",
    "MANSECT",
    "MANPL",
    "SSLKEYLOGFILE",
    "TMP",
    "TEMP",
    "TEMPDIR",
    "LOCALDOMAIN",
    "CONFIG_SITE",
    "GOAUTH",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
    "AWS_ENDPOINT_URL",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "NPM_CONFIG_USERCONFIG",
];
/// Families of variables a secret may not set, by the start of their names: the dynamic
/// loader and libc, git (GIT_CONFIG_COUNT/KEY_n/VALUE_n run code through core.fsmonitor),
/// less (LESSOPEN runs a command), ssh, libpq and psql (PGHOST, PGPORT, PGSSLMODE... redirect a
/// child's database connection, with its password, elsewhere), interpreters, package managers,
/// XDG directories and cargo.
const PROTECTED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH_FUNC_",
    "MALLOC_",
    "GLIBC_",
    "GIT_",
    "LESS",
    "SSH_",
    "PG",
    "PSQL_",
    "PYTHON",
    "NODE_",
    "NPM_CONFIG_",
    "YARN_",
    "PERL",
    "RUBY",
    "BUNDLE_",
    "JAVA_",
    "_JAVA_",
    "JDK_",
    "MAVEN_",
    "GRADLE_",
    "XDG_",
    "CARGO_",
    "RUSTUP_",
    "DOTNET_",
    "COMPlus_",
    "CORECLR_",
    "PIP_",
    "UV_",
    "CONDA_",
    "VIRTUAL_ENV",
    "LC_",
    "SYSTEMD_",
    "DBUS_",
    "GROFF_",
    "LUA_",
    "RSYNC_",
    "SVN_",
    "HG",
    "CCACHE_",
    "OPENSSL_",
    "AWS_ENDPOINT_URL_",
];
/// Families by the end of their names: pagers and editors other programs start (PAGER,
/// MANPAGER, GIT_PAGER, SYSTEMD_EDITOR...), proxies (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY,
/// NO_PROXY) and option variables that programs read as command-line options.
const PROTECTED_SUFFIXES: &[&str] = &["PAGER", "EDITOR", "_PROXY", "_OPTIONS", "_OPTS", "_ASKPASS"];

pub fn is_protected(var: &str) -> bool {
    let var = var.to_ascii_uppercase();
    PROTECTED.contains(&var.as_str())
        || PROTECTED_PREFIXES
            .iter()
            .any(|p| var.starts_with(&p.to_ascii_uppercase()))
        || PROTECTED_SUFFIXES.iter().any(|s| var.ends_with(s))
        || var == "PROXY"
}

/// The rule in words, for `pgvault run --help`.
pub fn rule_help() -> String {
    format!(
        "Exact names: {}.\nNames starting with: {}.\nNames ending with: {}.",
        PROTECTED.join(", "),
        PROTECTED_PREFIXES
            .iter()
            .map(|p| format!("{p}*"))
            .collect::<Vec<_>>()
            .join(", "),
        PROTECTED_SUFFIXES
            .iter()
            .map(|p| format!("*{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A name a shell and `env` accept: a letter or `_`, then letters, digits and `_`.
pub fn is_env_key(var: &str) -> bool {
    let mut chars = var.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub struct Plan {
    /// (index into the secrets, variable name)
    pub set: Vec<(usize, String)>,
    pub warnings: Vec<String>,
}

/// The variables to set for secrets `names`: protected ones only when in `allow`, names that
/// cannot be variables and two secrets for one variable skipped, and with `keep_env` the
/// variables `exists` says are set left alone. Each skip comes with a warning.
pub fn plan(names: &[&str], allow: &[String], keep_env: bool, exists: &dyn Fn(&str) -> bool) -> Plan {
    let mut by_var: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        by_var.entry(dotenv::env_name(name)).or_default().push(i);
    }
    let mut set = Vec::new();
    let mut warnings = Vec::new();
    for (var, idx) in by_var {
        let shown: Vec<String> = idx.iter().map(|&i| escape(names[i])).collect();
        if idx.len() > 1 {
            warnings.push(format!(
                "secrets {} all become the variable {var}: none of them is set (pick one with --only)",
                shown.join(", ")
            ));
            continue;
        }
        if !is_env_key(&var) {
            warnings.push(format!(
                "skipping secret {}: {} cannot be an environment variable name",
                shown[0],
                escape(&var)
            ));
            continue;
        }
        if is_protected(&var) && !allow.iter().any(|a| a == &var) {
            warnings.push(format!(
                "skipping secret {}: it would set {var}, which changes how programs are found or loaded \
                 (allow it with --allow-var {var})",
                shown[0]
            ));
            continue;
        }
        if keep_env && exists(&var) {
            warnings.push(format!(
                "keeping {var} from the environment (--keep-env); secret {} not used",
                shown[0]
            ));
            continue;
        }
        set.push((idx[0], var));
    }
    set.sort();
    Plan { set, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(p: &Plan) -> Vec<&str> {
        p.set.iter().map(|(_, v)| v.as_str()).collect()
    }

    #[test]
    fn protected_variables_need_allow_var() {
        let names = [
            "path",
            "ld_preload",
            "Dyld_Insert_Libraries",
            "node-options",
            "ok_key",
            "home",
        ];
        let p = plan(&names, &[], false, &|_| false);
        assert_eq!(vars(&p), ["OK_KEY"]);
        assert_eq!(p.warnings.len(), 5);
        assert!(p.warnings.iter().any(|w| w.contains("--allow-var LD_PRELOAD")));
        let p = plan(&names, &["PATH".into()], false, &|_| false);
        assert_eq!(vars(&p), ["PATH", "OK_KEY"]);
    }

    #[test]
    fn the_review_s_variables_are_protected() {
        // Each ran code or redirected a connection in a child (issue 26's fourth finding).
        for var in [
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "GIT_CONFIG_VALUE_0",
            "LESSOPEN",
            "LESSCLOSE",
            "PGHOST",
            "PGPORT",
            "PGSSLMODE",
            "PGHOSTADDR",
            "PGSERVICEFILE",
            "PGOPTIONS",
            "PSQLRC",
            "PSQL_PAGER",
            "PAGER",
            "MANPAGER",
            "GIT_PAGER",
            "EDITOR",
            "SYSTEMD_EDITOR",
            "SSH_ASKPASS",
            "SSH_AUTH_SOCK",
            "BROWSER",
            "HTTP_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "NO_PROXY",
            "JAVA_TOOL_OPTIONS",
            "MAVEN_OPTS",
            "PYTHONWARNINGS",
            "NODE_OPTIONS",
            "LD_PRELOAD",
            "GOFLAGS",
            "CARGO_BUILD_RUSTC_WRAPPER",
            "XDG_CONFIG_HOME",
            "VIMINIT",
            // the second review's
            "GNUMAKEFLAGS",
            "RM",
            "TARGET_ARCH",
            "PS0",
            "MANROFFOPT",
            "SSLKEYLOGFILE",
            "TMP",
            "TEMP",
            "HISTFILE",
            "LOCALDOMAIN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_CONFIG_FILE",
            "LUA_INIT",
            "RSYNC_RSH",
            "RSYNC_CONNECT_PROG",
            "SVN_SSH",
            "HGRCPATH",
            "CCACHE_PREFIX",
            "CONFIG_SITE",
            "GOAUTH",
            "FCEDIT",
            "OPENSSL_CONF_INCLUDE",
            "MFLAGS",
            "GROFF_TMAC_PATH",
        ] {
            assert!(is_protected(var), "{var} must be protected");
        }
        for var in [
            "STRIPE_SECRET_KEY",
            "OPENAI_API_KEY",
            "DATABASE_URL",
            "API_TOKEN",
            "SENTRY_DSN",
            "DB_PASSWORD",
            "GOOGLE_API_KEY",
            "GOOD",
            "LANGFUSE_SECRET_KEY",
            "GITHUB_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            assert!(!is_protected(var), "{var} is an ordinary secret's variable");
        }
        let names = [
            "git_config_count",
            "git_config_key_0",
            "git_config_value_0",
            "lessopen",
            "pghost",
            "api_token",
        ];
        let p = plan(&names, &[], false, &|_| false);
        assert_eq!(vars(&p), ["API_TOKEN"]);
        assert_eq!(p.warnings.len(), 5);
        let help = rule_help();
        assert!(help.contains("GIT_*") && help.contains("*PAGER") && help.contains("PG*"));
    }

    #[test]
    fn bad_names_and_collisions_are_skipped_not_fatal() {
        let names = ["9lives", "a-b", "a_b", "good"];
        let p = plan(&names, &[], false, &|_| false);
        assert_eq!(vars(&p), ["GOOD"]);
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings.iter().any(|w| w.contains("a-b, a_b")));
        assert!(p.warnings.iter().any(|w| w.contains("9LIVES cannot be")));
    }

    #[test]
    fn keep_env_leaves_existing_variables() {
        let names = ["token", "other"];
        let p = plan(&names, &[], true, &|v| v == "TOKEN");
        assert_eq!(vars(&p), ["OTHER"]);
        let p = plan(&names, &[], false, &|v| v == "TOKEN");
        assert_eq!(vars(&p), ["TOKEN", "OTHER"]);
    }
}
