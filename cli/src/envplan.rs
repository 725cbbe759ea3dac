//! Which secrets `run` puts in the child's environment, under which names.
//!
//! A secret never sets a variable that changes how the child (or anything it starts) is found,
//! loaded or interpreted, unless the user names that variable with --allow-var: anyone who may
//! write a secret could otherwise run code in every process `pgvault run` starts.

use crate::dotenv;
use crate::text::escape;
use std::collections::BTreeMap;

/// Variables a secret may not set (exact names).
const PROTECTED: &[&str] = &[
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
    "PS4",
    "PROMPT_COMMAND",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "PYTHONBREAKPOINT",
    "PYTHONEXECUTABLE",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "GEM_PATH",
    "GEM_HOME",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    "TMPDIR",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "GIT_SSH_COMMAND",
    "GIT_SSH",
    "GIT_EXEC_PATH",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "LUA_PATH",
    "LUA_CPATH",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "R_PROFILE",
    "R_PROFILE_USER",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "OPENSSL_CONF",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "XDG_CONFIG_HOME",
    "ZDOTDIR",
    "TERMINFO",
    "MALLOC_CONF",
];
/// Variables a secret may not set (prefixes).
const PROTECTED_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_", "MALLOC_", "GLIBC_"];

pub fn is_protected(var: &str) -> bool {
    PROTECTED.contains(&var) || PROTECTED_PREFIXES.iter().any(|p| var.starts_with(p))
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
