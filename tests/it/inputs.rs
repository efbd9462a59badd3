//! No input makes imagegen panic or hang: property tests over everything it reads that someone
//! else wrote, each fed both well-formed documents with odd contents and documents cut or
//! spliced at random, and each followed as far downstream as the text allows (rendering,
//! planning, the plan's text, recording a job's state).
//!
//! | reader                                   | cases |
//! | ---------------------------------------- | ----- |
//! | a definition, parsed and rendered        | 512   |
//! | variables.json, parsed and edited        | 512   |
//! | a whole catalog, planned and printed     | 128   |
//! | osob-mapping/osob.json                   | 512   |
//! | the ledger, parsed, planned and printed  | 512   |
//! | Image Factory's and Azure AD's answers   | 1024  |
//!
//! Each reader's cases must all end within [`WATCHDOG`], so a case that loops forever fails
//! the test rather than stalling the suite. Together they take a few seconds.

use std::fmt::Debug;
use std::sync::LazyLock;
use std::time::Duration;

use imagegen::apply::submission::record_state;
use imagegen::catalog::{Catalog, DefinitionSource, Sources};
use imagegen::definitions::Definition;
use imagegen::factory::wire::{
    JobState, ServiceErrorResponse, SubmitResponse, TokenErrorResponse, TokenResponse,
};
use imagegen::plan::{self, PlanOptions};
use imagegen::state::{Ledger, LedgerEntry, parse_ledger};
use imagegen::variables::{self, Variables};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

/// The longest all the cases of one reader may take.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `cases` cases of the strategy `make` builds through `test`, on a thread of their own
/// (the strategy is built there: a recursive one cannot cross threads); fails on the first
/// panic, with the smallest input proptest finds, or when the cases take past [`WATCHDOG`].
fn check<S>(name: &str, cases: u32, make: impl FnOnce() -> S + Send + 'static, test: fn(S::Value))
where
    S: Strategy,
    S::Value: Debug + 'static,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let strategy = make();
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |value| {
            test(value);
            Ok(())
        });
        let _ = done.send(result.map_err(|error| error.to_string()));
    });
    match finished.recv_timeout(WATCHDOG) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("{name}: {error}"),
        Err(_) => panic!("{name}: the cases did not end within {WATCHDOG:?}: one hangs"),
    }
}

// --- Generators -------------------------------------------------------------------------------

/// Pieces that mean something to one reader or another: placeholders and braces, escapes
/// (a lone surrogate among them), quotes, a byte-order mark, control characters, long runs.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "{{",
    "}}",
    "{A}",
    "{VS_VERSION}",
    "{vs}",
    "{ }",
    "\\",
    "\"",
    "\\u",
    "\\ud800",
    "\\udc00x",
    "\\ud83d\\ude00",
    "\\n",
    "\u{feff}",
    "\u{0}",
    "\r\n",
    "é",
    "😀",
    " ",
    "-",
    "_",
    ".",
    "/",
    "..",
    "x",
    "Helix-Image_1",
    "2026-11-23T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "-009999-01-01T00:00:00Z",
    "1e309",
    "-0",
    "18446744073709551616",
    // Stands for a raw `\ud800` escape, put into the JSON text once it is written (a JSON
    // writer would escape the backslash): see `Damage::LoneSurrogates`.
    SURROGATE_MARK,
];

/// A private-use character no reader gives a meaning, so it can stand for a raw escape.
const SURROGATE_MARK: &str = "\u{e000}";

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
        2 => any::<char>().prop_map(String::from),
        1 => (1usize..400).prop_map(|length| "a".repeat(length)),
    ]
}

/// A string made of [`fragment`]s.
fn odd_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..8).prop_map(|parts| parts.concat())
}

/// A key: usually one a reader looks for, else any odd string.
fn key(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(known).prop_map(str::to_string),
        1 => odd_string(),
    ]
}

/// Any JSON value, keys drawn from `known` mostly, strings odd, nested a few levels.
fn json_value(known: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(known), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// How a generated document is damaged, if at all.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Every [`SURROGATE_MARK`] becomes the escape of half a surrogate pair, which is JSON
    /// syntax but no character: inside a string, only reading the string finds it out.
    LoneSurrogates,
    /// Cut after this share of its bytes.
    Truncate(f64),
    /// This text put in at this share of its bytes.
    Splice(f64, String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        5 => Just(Damage::None),
        3 => Just(Damage::LoneSurrogates),
        1 => (0.0f64..1.0).prop_map(Damage::Truncate),
        2 => (0.0f64..1.0, odd_string()).prop_map(|(at, text)| Damage::Splice(at, text)),
    ]
}

/// The byte offset nearest to `share` of `text` that is a character boundary.
fn boundary(text: &str, share: f64) -> usize {
    let mut at = ((text.len() as f64) * share) as usize;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn damaged(text: String, damage: &Damage) -> String {
    match damage {
        Damage::None => text,
        Damage::LoneSurrogates => text.replace(SURROGATE_MARK, "\\ud800"),
        Damage::Truncate(share) => text[..boundary(&text, *share)].to_string(),
        Damage::Splice(share, piece) => {
            let at = boundary(&text, *share);
            format!("{}{piece}{}", &text[..at], &text[at..])
        }
    }
}

/// A document: `shape` serialized (compact or pretty), perhaps damaged; or plain odd text.
fn document(shape: impl Strategy<Value = Value>) -> impl Strategy<Value = String> {
    prop_oneof![
        5 => (shape, any::<bool>(), damage()).prop_map(|(value, pretty, damage)| {
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }
            .expect("a value serializes");
            damaged(text, &damage)
        }),
        1 => odd_string(),
    ]
}

/// A string value a template might hold: often a sound image name template, else
/// placeholders among odd text.
fn template_string() -> impl Strategy<Value = Value> {
    let sound = proptest::sample::select(
        &[
            "Helix-{VS_VERSION}",
            "Image_{VS_VERSION}-1",
            "Win-11",
            "{VS_VERSION}",
        ][..],
    )
    .prop_map(Value::from);
    let composed = proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(
                &["Helix-", "Image_", "{VS_VERSION}", "{A}", "{MISSING}", "{{", "}}", "-1"][..]
            )
            .prop_map(str::to_string),
            1 => odd_string(),
        ],
        0..5,
    )
    .prop_map(|parts| Value::String(parts.concat()));
    prop_oneof![2 => sound, 1 => composed]
}

const DEFINITION_KEYS: &[&str] = &[
    "Destination",
    "CustomImageName",
    "BaseImage",
    "Artifacts",
    "Parameters",
    "Name",
];

/// Something shaped like a definition: a Destination list of image names, with other members.
fn definition_value() -> impl Strategy<Value = Value> {
    let destination = proptest::collection::vec(
        prop_oneof![
            3 => template_string().prop_map(|name| serde_json::json!({"CustomImageName": name})),
            1 => json_value(DEFINITION_KEYS),
        ],
        0..3,
    );
    (
        destination,
        proptest::collection::vec((key(DEFINITION_KEYS), json_value(DEFINITION_KEYS)), 0..4),
    )
        .prop_map(|(destination, members)| {
            let mut object: Map<String, Value> = members.into_iter().collect();
            object.insert("Destination".into(), Value::Array(destination));
            Value::Object(object)
        })
}

fn definition_text() -> impl Strategy<Value = String> {
    document(prop_oneof![
        3 => definition_value(),
        1 => json_value(DEFINITION_KEYS),
    ])
}

const VARIABLE_NAMES: &[&str] = &["VS_VERSION", "A", "UNUSED", "vs_version", "", "{A}"];

fn variables_text() -> impl Strategy<Value = String> {
    let object = proptest::collection::vec(
        (
            key(VARIABLE_NAMES),
            prop_oneof![
                4 => odd_string().prop_map(Value::String),
                1 => json_value(VARIABLE_NAMES),
            ],
        ),
        0..6,
    )
    .prop_map(|members| Value::Object(members.into_iter().collect()));
    // Duplicate keys survive only in text: splice a member in twice now and then.
    (document(object), proptest::option::of(key(VARIABLE_NAMES))).prop_map(|(text, duplicate)| {
        match (duplicate, text.find('{')) {
            (Some(name), Some(at)) => {
                let member = format!(
                    "{}: \"1\", {}: \"2\",",
                    Value::from(name.clone()),
                    Value::from(name)
                );
                format!("{}{member}{}", &text[..=at], &text[at + 1..])
            }
            _ => text,
        }
    })
}

// --- Definitions and variables.json ------------------------------------------------------------

static VARIABLES: LazyLock<Variables> =
    LazyLock::new(|| Variables::from_pairs([("VS_VERSION", "17_12_1"), ("A", "a b{")]));

#[test]
fn no_definition_text_panics_or_hangs() {
    check("definitions", 512, definition_text, |text| {
        let (parsed, _) = Definition::parse("gen/x", "definitions/gen/x.json", &text);
        if let Some((definition, template)) = parsed {
            let _ = definition.render(template, &VARIABLES);
        }
    });
}

#[test]
fn no_variables_text_panics_or_hangs() {
    check(
        "variables.json",
        512,
        || {
            let changes = proptest::collection::vec((key(VARIABLE_NAMES), odd_string()), 0..3);
            (variables_text(), changes, any::<bool>())
        },
        |(text, changes, add)| {
            let _ = Variables::parse("variables.json", &text);
            let _ = variables::set_values(&text, &changes, add);
        },
    );
}

#[test]
fn no_catalog_panics_or_hangs_when_planned_and_printed() {
    check(
        "catalog",
        128,
        || {
            let definitions = proptest::collection::vec(definition_text(), 0..4);
            (proptest::option::of(variables_text()), definitions)
        },
        |(variables, texts)| {
            let definitions = texts
                .into_iter()
                .enumerate()
                .map(|(index, text)| DefinitionSource {
                    id: format!("gen/{index}"),
                    file: format!("definitions/gen/{index}.json"),
                    text,
                })
                .collect();
            let catalog = Catalog::build(Sources {
                variables,
                definitions,
                problems: Vec::new(),
            });
            let planned = plan::plan(&catalog, &Ledger::default(), PlanOptions::default());
            let _ = plan::render_text(&planned);
            for diagnostic in catalog.diagnostics.iter() {
                let _ = diagnostic.to_string();
            }
        },
    );
}

// --- osob-mapping/osob.json --------------------------------------------------------------------

const MAPPING_KEYS: &[&str] = &[
    "repository",
    "url",
    "base_branch",
    "pr_branch",
    "provider",
    "kind",
    "organization",
    "project",
    "owner",
    "azure-devops",
    "github",
    "local",
    "reviewers",
    "labels",
    "review_dates",
    "keys",
    "days",
    "commit_author",
    "name",
    "email",
    "definitions",
    "gen/0",
];

fn provider() -> impl Strategy<Value = Value> {
    let text = || prop_oneof![3 => Just("x".to_string()), 1 => odd_string()];
    prop_oneof![
        Just(serde_json::json!({"kind": "local"})),
        (text(), text(), text(), proptest::option::of(odd_string())).prop_map(
            |(organization, project, repository, api_url)| serde_json::json!({
                "kind": "azure-devops", "organization": organization, "project": project,
                "repository": repository, "api_url": api_url,
            })
        ),
        (text(), text()).prop_map(|(owner, repository)| serde_json::json!({
            "kind": "github", "owner": owner, "repository": repository,
        })),
        json_value(MAPPING_KEYS),
    ]
}

fn mapping_value() -> impl Strategy<Value = Value> {
    let branch = || {
        prop_oneof![
            3 => proptest::sample::select(&["main", "imagegen/x", "a..b", "-x", "x.lock"][..])
                .prop_map(Value::from),
            1 => odd_string().prop_map(Value::String),
        ]
    };
    let files = proptest::collection::vec(
        prop_oneof![
            2 => proptest::sample::select(&["definitions/a.yml", "../x", "/abs", "a//b", ""][..])
                .prop_map(str::to_string),
            1 => odd_string(),
        ],
        0..3,
    );
    (
        (branch(), proptest::option::of(branch())),
        provider(),
        proptest::collection::vec((key(&["gen/0", "gen/1", "gen/2"]), files), 0..3),
        proptest::option::of((proptest::collection::vec(odd_string(), 0..2), any::<i64>())),
        proptest::collection::vec(odd_string(), 0..2),
        proptest::option::of((odd_string(), odd_string())),
    )
        .prop_map(
            |((base, pr), provider, definitions, dates, labels, author)| {
                let definitions: Map<String, Value> = definitions
                    .into_iter()
                    .map(|(id, files)| (id, Value::from(files)))
                    .collect();
                let mut mapping = serde_json::json!({
                    "repository": {"url": "../osob.git", "base_branch": base},
                    "provider": provider,
                    "labels": labels,
                    "definitions": definitions,
                });
                if let Some(pr) = pr {
                    mapping["repository"]["pr_branch"] = pr;
                }
                if let Some((keys, days)) = dates {
                    mapping["review_dates"] = serde_json::json!({"keys": keys, "days": days});
                }
                if let Some((name, email)) = author {
                    mapping["commit_author"] = serde_json::json!({"name": name, "email": email});
                }
                mapping
            },
        )
}

#[test]
fn no_osob_mapping_panics_or_hangs() {
    let text = || {
        document(prop_oneof![
            3 => mapping_value(),
            1 => json_value(MAPPING_KEYS),
        ])
    };
    check("osob mapping", 512, text, |text| {
        let ids = ["gen/0".to_string(), "gen/1".to_string()];
        let _ = imagegen::osob::mapping::parse(&text, &ids);
    });
}

// --- The ledger --------------------------------------------------------------------------------

const LEDGER_KEYS: &[&str] = &[
    "version",
    "definitions",
    "manual",
    "payload_hash",
    "payload",
    "variables",
    "idempotency_key",
    "tracking_id",
    "status",
    "message",
    "image_names",
    "submitted_at",
    "updated_at",
    "completed_at",
    "adopted",
];

const STATUSES: &[&str] = &[
    "submitting",
    "queued",
    "running",
    "succeeded",
    "failed",
    "canceled",
    "Running",
];

const TIMESTAMPS: &[&str] = &[
    "2026-11-23T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "-009999-01-01T00:00:00Z",
    "2026-11-23T10:00:00+14:00",
    "not a time",
];

fn ledger_entry() -> impl Strategy<Value = Value> {
    let timestamp = || {
        prop_oneof![
            12 => Just(Value::from(TIMESTAMPS[0])),
            1 => proptest::sample::select(TIMESTAMPS).prop_map(Value::from),
        ]
    };
    let status = prop_oneof![
        12 => proptest::sample::select(&STATUSES[..6]).prop_map(str::to_string),
        1 => odd_string(),
    ];
    (
        prop_oneof![3 => Just("0".repeat(64)), 1 => odd_string().prop_map(|text| text.replace(SURROGATE_MARK, ""))],
        prop_oneof![
            3 => definition_value(),
            1 => json_value(DEFINITION_KEYS),
            // A payload holding what only a hand edit could put there.
            1 => Just(serde_json::json!({"Destination": [{"CustomImageName": SURROGATE_MARK}]})),
        ],
        proptest::collection::btree_map(key(VARIABLE_NAMES), odd_string(), 0..3),
        proptest::option::of(odd_string()),
        status,
        proptest::option::of(odd_string()),
        proptest::collection::vec(odd_string(), 0..2),
        (timestamp(), proptest::option::of(timestamp())),
        any::<bool>(),
    )
        .prop_map(
            |(
                hash,
                payload,
                variables,
                tracking_id,
                status,
                message,
                images,
                (updated, completed),
                adopted,
            )| {
                serde_json::json!({
                    "payload_hash": hash,
                    "payload": payload,
                    "variables": variables,
                    "idempotency_key": hash,
                    "tracking_id": tracking_id,
                    "status": status,
                    "message": message,
                    "image_names": images,
                    "submitted_at": updated,
                    "updated_at": updated,
                    "completed_at": completed,
                    "adopted": adopted,
                })
            },
        )
}

fn ledger_section() -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (
            prop_oneof![
                2 => proptest::sample::select(&["gen/0", "gen/1", "gone"][..]).prop_map(str::to_string),
                1 => odd_string(),
            ],
            ledger_entry(),
        ),
        0..4,
    )
    .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

fn ledger_value() -> impl Strategy<Value = Value> {
    (
        prop_oneof![12 => Just(Value::from(1)), 1 => json_value(LEDGER_KEYS)],
        ledger_section(),
        ledger_section(),
    )
        .prop_map(|(version, definitions, manual)| {
            serde_json::json!({"version": version, "definitions": definitions, "manual": manual})
        })
}

/// Two definitions that render, for plans against generated ledgers.
static SMALL_CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let definition = |name: &str| DefinitionSource {
        id: format!("gen/{name}"),
        file: format!("definitions/gen/{name}.json"),
        text: format!(
            r#"{{"Destination": [{{"CustomImageName": "Image-{name}-{{VS_VERSION}}"}}]}}"#
        ),
    };
    Catalog::build(Sources {
        variables: Some(r#"{"VS_VERSION": "17_12_1"}"#.to_string()),
        definitions: vec![definition("0"), definition("1")],
        problems: Vec::new(),
    })
});

#[test]
fn no_ledger_panics_or_hangs_when_read_planned_and_printed() {
    let text = || document(prop_oneof![4 => ledger_value(), 1 => json_value(LEDGER_KEYS)]);
    check("ledger", 512, text, |text| {
        if let Ok(ledger) = parse_ledger(".imagegen/state.json", text.as_bytes()) {
            for options in [
                PlanOptions::default(),
                PlanOptions {
                    force: true,
                    retry_failed: true,
                    allow_same_name: true,
                },
            ] {
                let planned = plan::plan(&SMALL_CATALOG, &ledger, options);
                let _ = plan::render_text(&planned);
                let _ = serde_json::to_string(&planned);
            }
        }
    });
}

// --- Image Factory's and Azure AD's answers ----------------------------------------------------

const WIRE_KEYS: &[&str] = &[
    "trackingId",
    "status",
    "message",
    "images",
    "name",
    "location",
    "resourceId",
    "createdAt",
    "updatedAt",
    "error",
    "code",
    "token_type",
    "expires_in",
    "access_token",
    "error_description",
];

fn job_state_value() -> impl Strategy<Value = Value> {
    let timestamp = proptest::option::of(proptest::sample::select(TIMESTAMPS));
    (
        odd_string(),
        prop_oneof![
            3 => proptest::sample::select(&["Queued", "Running", "Succeeded", "Failed", "Canceled"][..])
                .prop_map(str::to_string),
            1 => odd_string(),
        ],
        odd_string(),
        proptest::collection::vec((odd_string(), proptest::option::of(odd_string())), 0..3),
        timestamp.clone(),
        timestamp,
    )
        .prop_map(|(id, status, message, images, created, updated)| {
            let images: Vec<Value> = images
                .into_iter()
                .map(|(name, location)| serde_json::json!({"name": name, "location": location}))
                .collect();
            serde_json::json!({
                "trackingId": id, "status": status, "message": message, "images": images,
                "createdAt": created, "updatedAt": updated,
            })
        })
}

fn token_value() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(|n| Value::from(n.to_string())),
            odd_string().prop_map(Value::String),
        ],
        odd_string(),
    )
        .prop_map(|(expires_in, token)| {
            serde_json::json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": token})
        })
}

/// An entry whose job is in flight, for recording what the service says about it.
static IN_FLIGHT: LazyLock<LedgerEntry> = LazyLock::new(|| {
    let rendered = &SMALL_CATALOG.rendered[0];
    let now = "2026-11-23T10:00:00Z".parse().expect("a timestamp");
    let mut entry = LedgerEntry::intent(rendered, rendered.hash.to_string(), now);
    entry.tracking_id = Some("job-1".into());
    entry
});

#[test]
fn no_service_answer_panics_or_hangs() {
    let text = || {
        document(prop_oneof![
            3 => job_state_value(),
            2 => token_value(),
            1 => json_value(WIRE_KEYS),
        ])
    };
    check("Image Factory answers", 1024, text, |text| {
        if let Ok(state) = serde_json::from_str::<JobState>(&text) {
            let mut entry = IN_FLIGHT.clone();
            record_state(&mut entry, &state, jiff::Timestamp::now());
            let _ = serde_json::to_string(&entry);
        }
        let _ = serde_json::from_str::<SubmitResponse>(&text);
        let _ = serde_json::from_str::<TokenResponse>(&text);
        let _ = serde_json::from_str::<TokenErrorResponse>(&text);
        let _ = serde_json::from_str::<ServiceErrorResponse>(&text);
    });
}
