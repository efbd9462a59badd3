//! `imagegen doctor`: runs the checks of [`crate::doctor`] with a run's settings and prints one
//! line each (or one JSON document); on a CI platform each failure is also an annotation.

use std::sync::Arc;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use serde_json::json;

use super::Context;
use super::factory_options::FactoryOptions;
use crate::catalog::Catalog;
use crate::exit::Exit;
use crate::osob::mapping::{self, MAPPING_FILE};
use crate::output::{SHOWN_MESSAGE_CHARS, shown_within};
use crate::platform::Annotation;
use crate::preflight::{self, Check, Outcome};
use crate::state::MissingLedger;

/// What `imagegen doctor` is asked to do.
#[derive(Debug, Clone)]
pub struct DoctorRequest {
    /// The ledger as `--state` / `IMAGEGEN_STATE` names it. Located here rather than with the
    /// other commands' context, so that a ledger that cannot be located is one failed check
    /// among the others instead of an error that hides them.
    pub state: Option<String>,
    pub factory: FactoryOptions,
    /// `--osob-url` / `IMAGEGEN_OSOB_URL`.
    pub osob_url: Option<String>,
    /// How long each check may take.
    pub timeout: Duration,
}

/// The width of the name column: the longest name.
const NAME_WIDTH: usize = 22;

const PASS: Style = AnsiColor::Green.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const FAIL: Style = AnsiColor::Red.on_default().bold();
const SKIP: Style = Style::new().dimmed();

/// `imagegen doctor`: every check, then exit 0 when none failed (warnings pass), 1 otherwise.
pub fn doctor(context: &Context, request: DoctorRequest) -> anyhow::Result<Exit> {
    let output = &context.output;
    // The run's rule for a missing ledger (refused on a CI platform unless --init-ledger),
    // taken from the store the command line made.
    let missing = context.store.missing();
    let store = Context::new(
        context.repo.clone(),
        request.state.clone(),
        missing,
        output.clone(),
    )
    .map(|located| located.store)
    .map_err(|error| format!("{error:#}"));
    let catalog = Arc::new(Catalog::load(&context.repo));
    let settings = Arc::new(preflight::Settings {
        repo: context.repo.clone(),
        store,
        missing_ledger_fails: missing == MissingLedger::Refuse,
        factory: request.factory,
        mapping: usable_mapping(context, &catalog),
        catalog,
        osob_url: request.osob_url,
        timeout: request.timeout,
    });
    let checks = crate::runtime::block_on(preflight::run(settings))?;
    annotate(context, &checks)?;
    let failed = preflight::any_failed(&checks);
    if output.is_json() {
        output.json(&json!({ "ok": !failed, "checks": checks }))?;
    } else {
        output.text(&render(&checks))?;
    }
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// The mapping, or why the OSOB and pull-request checks have none to work with.
fn usable_mapping(context: &Context, catalog: &Catalog) -> Result<mapping::Mapping, String> {
    let (mapping, problems) = mapping::load(&context.repo, &catalog.ids());
    let errors: Vec<String> = problems
        .iter()
        .filter(|problem| problem.is_error())
        .map(ToString::to_string)
        .collect();
    match mapping {
        Some(mapping) if errors.is_empty() => Ok(mapping),
        _ if !errors.is_empty() => Err(errors.join("\n")),
        _ => Err(format!(
            "no {MAPPING_FILE} in {}: without it imagegen does not know where OSOB is",
            context.repo.display()
        )),
    }
}

/// Each failure as an error annotation and each warning as a warning, on a CI platform only:
/// off a platform the lines on stdout say it all.
fn annotate(context: &Context, checks: &[Check]) -> std::io::Result<()> {
    let output = &context.output;
    if output.platform.is_none() {
        return Ok(());
    }
    for check in checks {
        let message = match &check.fix {
            Some(fix) => format!("{}: {} Fix: {fix}", check.name, check.detail),
            None => format!("{}: {}", check.name, check.detail),
        };
        let annotation = match check.outcome {
            Outcome::Fail => Annotation::error(message),
            Outcome::Warn if !output.quiet => Annotation::warning(message),
            _ => continue,
        };
        let mut annotation = annotation.titled(format!("imagegen doctor: {}", check.name));
        annotation.code = Some(format!("doctor-{}", check.name));
        output.annotate(&annotation)?;
    }
    Ok(())
}

/// One line per check (a long detail goes on over indented lines, the fix under it), then a
/// count.
fn render(checks: &[Check]) -> String {
    let indent = " ".repeat(4 + 2 + NAME_WIDTH + 2);
    let mut text = String::new();
    for check in checks {
        let (word, style) = match check.outcome {
            Outcome::Pass => ("pass", PASS),
            Outcome::Warn => ("warn", WARN),
            Outcome::Fail => ("FAIL", FAIL),
            Outcome::Skip => ("skip", SKIP),
        };
        let detail = shown_within(&check.detail, SHOWN_MESSAGE_CHARS);
        let mut lines = detail.lines();
        text.push_str(&format!(
            "{style}{word}{style:#}  {:<NAME_WIDTH$}  {}\n",
            check.name,
            lines.next().unwrap_or_default()
        ));
        for line in lines {
            text.push_str(&format!("{indent}{line}\n"));
        }
        if let Some(fix) = &check.fix {
            text.push_str(&format!("{indent}fix: {fix}\n"));
        }
    }
    let count = |outcome: Outcome| {
        checks
            .iter()
            .filter(|check| check.outcome == outcome)
            .count()
    };
    let (failed, warned, skipped) = (
        count(Outcome::Fail),
        count(Outcome::Warn),
        count(Outcome::Skip),
    );
    text.push_str(&format!(
        "\n{} checks: {} passed, {} {}, {} failed{}\n",
        checks.len(),
        count(Outcome::Pass),
        warned,
        if warned == 1 { "warning" } else { "warnings" },
        failed,
        if skipped == 0 {
            String::new()
        } else {
            format!(", {skipped} skipped")
        }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_is_one_line_with_its_fix_under_it() {
        let checks = [
            Check::pass(preflight::AZURE_AD, "a token was issued"),
            Check::fail(
                preflight::OSOB_FILES,
                "a.yml: no image\nb.yml: no image",
                "fix the mapping",
            ),
            Check::skip(preflight::PR_PROVIDER, "not checked"),
        ];
        let text = anstream::adapter::strip_str(&render(&checks)).to_string();
        assert_eq!(
            text,
            "\
pass  azure-ad                a token was issued
FAIL  osob-files              a.yml: no image
                              b.yml: no image
                              fix: fix the mapping
skip  pr-provider             not checked

3 checks: 1 passed, 0 warnings, 1 failed, 1 skipped
"
        );
    }
}
