//! Settings as they reach imagegen (flags and environment variables), checked before any is
//! used: a value that still holds a CI platform's macro (`$(name)`, `$[ ... ]`, `${{ ... }}`)
//! means the pipeline never defined the variable it names. Azure Pipelines then passes the
//! macro on as written, and a ledger path of `$(imagegen-state-url)` would be read as a missing
//! file, that is an empty ledger, and every definition submitted again.

use std::sync::LazyLock;

use regex::Regex;

/// The settings imagegen reads from the environment alone, never from a flag: each with
/// whether its value is a secret, so that no message ever shows it.
pub const ENVIRONMENT_ONLY: &[(&str, bool)] = &[
    (crate::factory::auth::TENANT_ID_VAR, false),
    (crate::factory::auth::CLIENT_ID_VAR, false),
    (crate::factory::auth::CLIENT_SECRET_VAR, true),
    (crate::factory::auth::RESOURCE_ID_VAR, false),
    (crate::state::blob::SAS_VAR, true),
    (
        crate::pull_request::azure_devops::SYSTEM_ACCESS_TOKEN_VAR,
        true,
    ),
    (crate::pull_request::azure_devops::PAT_VAR, true),
    (crate::pull_request::github::GITHUB_TOKEN_VAR, true),
];

/// One setting as people may give it: its flag, its environment variable, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// `--state`, without a value.
    pub flag: Option<String>,
    pub env: Option<String>,
    /// Its value is never shown (a token, a SAS, or a URL that may carry one).
    pub secret: bool,
}

impl Setting {
    /// How a message names it: `--state (IMAGEGEN_STATE)`, or whichever name it has.
    pub fn name(&self) -> String {
        match (&self.flag, &self.env) {
            (Some(flag), Some(env)) => format!("{flag} ({env})"),
            (Some(flag), None) => flag.clone(),
            (None, Some(env)) => env.clone(),
            (None, None) => "a setting".to_string(),
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    Environment,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error(
        "{} {}: the pipeline variable it names is not defined, so the pipeline passed the macro \
         on as written{}. Define the variable (in the pipeline or its variable group) or map \
         the right one; nothing was read or sent",
        setting.name(),
        match (from, shown) {
            (Source::CommandLine, Some(shown)) => format!("was given as {shown} on the command line"),
            (Source::CommandLine, None) => "was given an unexpanded macro on the command line".to_string(),
            (Source::Environment, Some(shown)) => format!("is {shown} in the environment"),
            (Source::Environment, None) => "holds an unexpanded macro in the environment (its value is secret, so it is not shown)".to_string(),
        },
        platform_hint(shown.as_deref())
    )]
    Unexpanded {
        setting: Setting,
        from: Source,
        /// The macro, when showing it reveals nothing of a secret.
        shown: Option<String>,
    },
}

fn platform_hint(shown: Option<&str>) -> &'static str {
    match shown {
        Some(text) if text.starts_with("${{") => {
            " (a `${{ }}` expression is expanded when the pipeline is compiled)"
        }
        Some(text) if text.starts_with("$[") => {
            " (a `$[ ]` expression is expanded when the job starts)"
        }
        _ => "",
    }
}

/// The first macro a CI platform left unexpanded in `value`: Azure Pipelines' `$(name)` and
/// `$[ expression ]`, and the `${{ expression }}` of Azure's templates and of GitHub Actions.
pub fn unexpanded_macro(value: &str) -> Option<&str> {
    static MACRO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\([A-Za-z_][A-Za-z0-9_.\- ]*\)|\$\[[^\]]*\]|\$\{\{[^}]*\}\}")
            .expect("a valid pattern")
    });
    MACRO.find(value).map(|found| found.as_str())
}

/// Refuses `value` of `setting` if it holds an unexpanded macro. The macro is shown unless the
/// setting is a secret whose value is more than the macro alone.
pub fn check(setting: &Setting, source: Source, value: &str) -> Result<(), SettingError> {
    let Some(found) = unexpanded_macro(value) else {
        return Ok(());
    };
    let shown = (!setting.secret || value.trim() == found).then(|| found.to_string());
    Err(SettingError::Unexpanded {
        setting: setting.clone(),
        from: source,
        shown,
    })
}

/// Checks the [`ENVIRONMENT_ONLY`] settings as `lookup` sees the environment.
pub fn check_environment(lookup: impl Fn(&str) -> Option<String>) -> Result<(), SettingError> {
    for &(name, secret) in ENVIRONMENT_ONLY {
        if let Some(value) = lookup(name) {
            let setting = Setting {
                flag: None,
                env: Some(name.to_string()),
                secret,
            };
            check(&setting, Source::Environment, &value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_macro_is_found() {
        for (value, found) in [
            ("$(imagegen-state-url)", "$(imagegen-state-url)"),
            ("https://$(account).blob.core.windows.net/c/b", "$(account)"),
            ("$(System.AccessToken)", "$(System.AccessToken)"),
            ("$[variables.url]", "$[variables.url]"),
            ("${{ secrets.SAS }}", "${{ secrets.SAS }}"),
            ("${{variables.url}}", "${{variables.url}}"),
        ] {
            assert_eq!(unexpanded_macro(value), Some(found), "{value}");
        }
        for value in [
            "https://x.blob.core.windows.net/c/state.json",
            "state.json",
            "$HOME/state.json",
            "cost $(5",
            "a$()b",
        ] {
            assert_eq!(unexpanded_macro(value), None, "{value}");
        }
    }

    fn setting(secret: bool) -> Setting {
        Setting {
            flag: Some("--state".into()),
            env: Some("IMAGEGEN_STATE".into()),
            secret,
        }
    }

    #[test]
    fn the_message_names_the_flag_and_the_variable() {
        let error = check(
            &setting(false),
            Source::Environment,
            "$(imagegen-state-url)",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with(
                "--state (IMAGEGEN_STATE) is $(imagegen-state-url) in the environment: the \
                 pipeline variable it names is not defined"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_secret_is_never_shown_beyond_the_macro_alone() {
        let error = check(&setting(true), Source::Environment, " $(sas) ")
            .unwrap_err()
            .to_string();
        assert!(error.contains("is $(sas) in the environment"), "{error}");
        let error = check(&setting(true), Source::Environment, "sig=canary$(x)")
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("canary") && !error.contains("$(x)"),
            "{error}"
        );
        assert!(error.contains("its value is secret"), "{error}");
    }

    #[test]
    fn only_the_environment_only_settings_set_are_checked() {
        assert_eq!(check_environment(|_| None), Ok(()));
        let error = check_environment(|name| {
            (name == crate::factory::auth::CLIENT_SECRET_VAR)
                .then(|| "$(image-factory-client-secret)".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with(
                "IMAGE_FACTORY_CLIENT_SECRET is $(image-factory-client-secret) in the environment"
            ),
            "{error}"
        );
    }
}
