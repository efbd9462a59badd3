//! The whole OSOB story through the binary, for every pull-request provider (`azure-devops`,
//! `github`, `local`) and both ways of reaching OSOB (a local path, and https with a token as
//! production does): jobs pending leave OSOB alone, the finished batch pushes one branch and
//! opens one pull request, a later change updates the same one, a run with nothing new pushes
//! nothing, a dry run touches nothing, and a reviewer's commit on the branch is left alone.
//! And a service that answers without end is cut off at the answer limit.

use imagegen::factory::emulator::Emulator;

use crate::common::git_https::GitHttpsServer;
use crate::common::osob::{BRANCH, Osob};
use crate::common::{self, Repo, fast_emulator, imagegen_against, stderr_of, stdout_of};
use crate::common_pr::{AdoCredential, AdoSetup, FakeAzureDevOps, FakeGitHub, GitHubSetup};

/// Every token of the story holds this, so a leak anywhere in the output is caught.
const TOKEN: &str = "canary-token-5e2d";
const ADO_REVIEWER: &str = "4b3a1c52-9d0e-4f57-8c11-2b9c1f0e7a6d";
const GITHUB_REVIEWER: &str = "osob-reviewer";

#[derive(Debug, Clone, Copy)]
enum Provider {
    AzureDevOps,
    GitHub,
    Local,
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    LocalPath,
    Https,
}

/// The pull-request service a provider talks to, if any.
enum Service {
    AzureDevOps(FakeAzureDevOps),
    GitHub(FakeGitHub),
    Local,
}

/// A pull request as any service keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pull {
    number: u64,
    title: String,
    body: String,
    reviewers: Vec<String>,
    labels: Vec<String>,
    /// Every comment's text (Azure DevOps: each thread's first comment).
    comments: Vec<String>,
}

impl Service {
    async fn start(provider: Provider) -> Self {
        match provider {
            Provider::AzureDevOps => Self::AzureDevOps(
                FakeAzureDevOps::start(AdoSetup::new(
                    "dnceng",
                    "internal",
                    "dotnet-helix-machines",
                    AdoCredential::Pat(TOKEN.to_string()),
                ))
                .await,
            ),
            Provider::GitHub => Self::GitHub(
                FakeGitHub::start(GitHubSetup::new("dotnet", "helix-machines", TOKEN)).await,
            ),
            Provider::Local => Self::Local,
        }
    }

    /// The mapping's `provider` and `reviewers` for this service.
    fn mapping(&self) -> (serde_json::Value, Vec<&'static str>) {
        match self {
            Self::AzureDevOps(service) => (
                serde_json::json!({
                    "kind": "azure-devops",
                    "organization": "dnceng",
                    "project": "internal",
                    "repository": "dotnet-helix-machines",
                    "api_url": service.endpoint(),
                }),
                vec![ADO_REVIEWER],
            ),
            Self::GitHub(service) => (
                serde_json::json!({
                    "kind": "github",
                    "owner": "dotnet",
                    "repository": "helix-machines",
                    "api_url": service.api_base(),
                }),
                vec![GITHUB_REVIEWER],
            ),
            Self::Local => (serde_json::json!({"kind": "local"}), vec![]),
        }
    }

    /// The token variable the provider (and git over https) reads, and the user name git sends.
    fn token_variable(&self) -> (&'static str, &'static str) {
        match self {
            Self::GitHub(_) => ("GITHUB_TOKEN", "x-access-token"),
            Self::AzureDevOps(_) | Self::Local => ("AZURE_DEVOPS_PAT", "imagegen"),
        }
    }

    fn pulls(&self) -> Vec<Pull> {
        match self {
            Self::AzureDevOps(service) => service
                .pulls()
                .into_iter()
                .map(|pull| Pull {
                    number: u64::try_from(pull.id).expect("a positive id"),
                    title: pull.title,
                    body: pull.description,
                    reviewers: pull.reviewers,
                    labels: pull.labels,
                    comments: pull.comments.into_iter().map(|c| c.body).collect(),
                })
                .collect(),
            Self::GitHub(service) => service
                .pulls()
                .into_iter()
                .map(|pull| Pull {
                    number: pull.number,
                    title: pull.title,
                    body: pull.body,
                    reviewers: pull.requested_reviewers,
                    labels: pull.labels,
                    comments: pull.comments.into_iter().map(|c| c.body).collect(),
                })
                .collect(),
            Self::Local => Vec::new(),
        }
    }

    /// How many requests changed something on the service.
    fn writes(&self) -> usize {
        let requests = match self {
            Self::AzureDevOps(service) => service.requests(),
            Self::GitHub(service) => service.requests(),
            Self::Local => return 0,
        };
        requests
            .iter()
            .filter(|request| request.method != "GET")
            .count()
    }
}

/// One story's world: the repository, OSOB, the service, the emulator, and how OSOB is reached.
struct World {
    repo: Repo,
    osob: Osob,
    service: Service,
    git: Option<GitHttpsServer>,
    emulator: Emulator,
}

impl World {
    async fn new(provider: Provider, transport: Transport) -> Self {
        let service = Service::start(provider).await;
        let repo = Repo::shipped();
        let mut mapping: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(common::manifest_dir().join("osob-mapping/osob.json"))
                .expect("the shipped mapping"),
        )
        .expect("the shipped mapping is JSON");
        let (provider_json, reviewers) = service.mapping();
        mapping["provider"] = provider_json;
        mapping["reviewers"] = serde_json::json!(reviewers);
        repo.write(
            "osob-mapping/osob.json",
            &serde_json::to_string_pretty(&mapping).expect("a mapping"),
        );
        let osob = Osob::new();
        let git = match transport {
            Transport::LocalPath => None,
            Transport::Https => {
                let (_, username) = service.token_variable();
                Some(GitHttpsServer::start(osob.root(), username, TOKEN).await)
            }
        };
        Self {
            repo,
            osob,
            service,
            git,
            emulator: fast_emulator(),
        }
    }

    fn osob_url(&self) -> String {
        match &self.git {
            Some(server) => server.url("osob.git"),
            None => self.osob.url(),
        }
    }

    /// Runs the binary with `args` and `token`, expects `code`, returns stdout and stderr; no
    /// output ever shows the token.
    fn run_with_token(&self, args: &[&str], token: &str, code: i32) -> String {
        let (variable, _) = self.service.token_variable();
        let mut command = imagegen_against(&self.repo, &self.emulator);
        command
            .env("IMAGEGEN_OSOB_URL", self.osob_url())
            .env_remove("GITHUB_TOKEN")
            .env_remove("AZURE_DEVOPS_PAT")
            .env_remove("SYSTEM_ACCESSTOKEN")
            .env(variable, token)
            .args(args);
        if let Some(server) = &self.git {
            command.envs(server.environment());
        }
        let output = tokio::task::block_in_place(|| command.output().expect("run imagegen"));
        let text = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert_eq!(
            output.status.code(),
            Some(code),
            "imagegen {args:?}:\n{text}"
        );
        assert!(!text.contains(token), "the token never shows: {text}");
        text
    }

    fn run(&self, args: &[&str], code: i32) -> String {
        self.run_with_token(args, TOKEN, code)
    }

    fn pushes(&self) -> Option<usize> {
        self.git.as_ref().map(GitHttpsServer::pushes)
    }

    fn bump(&self, from: &str, to: &str) {
        let variables = self.repo.read("variables.json");
        assert!(variables.contains(from), "variables.json holds {from}");
        self.repo
            .write("variables.json", &variables.replace(from, to));
    }
}

const WAIT: [&str; 4] = ["reconcile", "--wait", "--poll-interval", "100ms"];

async fn story(provider: Provider, transport: Transport) {
    let world = World::new(provider, transport).await;
    let has_service = !matches!(provider, Provider::Local);

    // Jobs still being built: OSOB is left alone, and the run says why.
    let pending = world.run(&["reconcile"], 2);
    assert!(
        pending.contains("OSOB pull request: not yet, jobs are still being built"),
        "{pending}"
    );
    assert_eq!(world.osob.tip(BRANCH), None);
    assert!(world.service.pulls().is_empty());
    assert_eq!(world.pushes().unwrap_or(0), 0);

    // The batch ends: one branch pushed, one pull request with its labels and reviewers.
    let built = world.run(&WAIT, 0);
    assert!(built.contains("16 succeeded"), "{built}");
    assert!(built.contains(&format!("pushed {BRANCH}")), "{built}");
    let first_tip = world.osob.tip(BRANCH).expect("the branch was pushed");
    assert!(
        world
            .osob
            .read(first_tip, "definitions/queues/windows-server.yml")
            .contains("Helix-Server-DataCenter-2022_20348.2849.241106")
    );
    if has_service {
        assert!(built.contains("pull request #"), "{built}");
        assert!(built.contains(" created: "), "{built}");
        let pulls = world.service.pulls();
        assert_eq!(pulls.len(), 1, "{pulls:?}");
        assert!(
            pulls[0].title.starts_with("Update Helix images: "),
            "{pulls:?}"
        );
        assert_eq!(pulls[0].labels, ["helix-images"]);
        let reviewer = match provider {
            Provider::GitHub => GITHUB_REVIEWER,
            _ => ADO_REVIEWER,
        };
        assert_eq!(pulls[0].reviewers, [reviewer]);
        match provider {
            // 16 images overflow Azure DevOps' 4,000 characters: every name stays in the
            // description's compact table, and one comment holds the full report.
            Provider::AzureDevOps => {
                assert!(pulls[0].body.chars().count() <= 4_000);
                assert!(
                    pulls[0]
                        .body
                        .contains("`Helix-Server-DataCenter-2025_26100.2314.241107`"),
                    "{}",
                    pulls[0].body
                );
                assert!(!pulls[0].body.contains("rows are not shown"));
                assert_eq!(pulls[0].comments.len(), 1, "{:?}", pulls[0].comments);
                assert!(pulls[0].comments[0].starts_with("### imagegen: the full report"));
                assert!(pulls[0].comments[0].contains("### Review dates moved"));
            }
            _ => assert!(pulls[0].comments.is_empty(), "everything fits: no report"),
        }
    } else {
        assert!(
            built.contains("The pull request imagegen would open or update (local"),
            "{built}"
        );
    }
    if let Some(pushes) = world.pushes() {
        assert_eq!(pushes, 1, "one push over https");
    }

    // A new Visual Studio preview: its definitions are rebuilt and the same pull request is
    // updated.
    world.bump("16_11_0_4", "16_11_0_5");
    let updated = world.run(&WAIT, 0);
    assert!(
        updated.contains("6 submitted by this run; 6 succeeded"),
        "{updated}"
    );
    let second_tip = world.osob.tip(BRANCH).expect("the branch is still there");
    assert_ne!(second_tip, first_tip);
    assert!(
        world
            .osob
            .read(second_tip, "definitions/queues/vs2019-preview.yml")
            .contains("Helix-Server-DataCenter-2019-EN-US-VS2019-Preview-Enterprise_16_11_0_5")
    );
    let pulls = world.service.pulls();
    if has_service {
        assert!(updated.contains(" updated: "), "{updated}");
        assert_eq!(pulls.len(), 1, "the same pull request, updated: {pulls:?}");
        assert!(
            pulls[0].title.contains("VS_2019_PREVIEW_VERSION 16_11_0_5"),
            "the title follows the new builds: {pulls:?}"
        );
        if let Provider::AzureDevOps = provider {
            assert_eq!(pulls[0].comments.len(), 1, "the report is updated in place");
            assert!(pulls[0].comments[0].contains("VS_2019_PREVIEW_VERSION 16_11_0_3 → 16_11_0_5"));
        }
    }

    // Nothing new: nothing pushed, nothing changed on the service.
    let writes = world.service.writes();
    let quiet = world.run(&["reconcile"], 0);
    assert!(quiet.contains("already holds this change"), "{quiet}");
    if has_service {
        assert!(quiet.contains(" already up to date: "), "{quiet}");
    }
    assert_eq!(world.osob.tip(BRANCH), Some(second_tip));
    assert_eq!(world.service.writes(), writes);
    assert_eq!(world.service.pulls(), pulls);
    if let Some(pushes) = world.pushes() {
        assert_eq!(pushes, 2, "no push when nothing changed");
    }

    // A dry run of a new change shows it and touches nothing.
    world.bump("17_12_1", "17_12_2");
    world.run(
        &["reconcile", "--wait", "--poll-interval", "100ms", "--no-pr"],
        0,
    );
    let preview = world.run(&["pr", "--dry-run"], 2);
    assert!(
        preview.contains("Helix-Server-DataCenter-2022-VS2022-Enterprise_17_12_2"),
        "{preview}"
    );
    assert!(preview.contains("nothing was pushed"), "{preview}");
    assert_eq!(world.osob.tip(BRANCH), Some(second_tip));
    assert_eq!(world.service.writes(), writes);
    if let Some(pushes) = world.pushes() {
        assert_eq!(pushes, 2, "a dry run pushes nothing");
        // A wrong token over https is refused by the server, said plainly, and not shown.
        let refused = world.run_with_token(&["pr", "--dry-run"], "canary-wrong-token", 1);
        assert!(refused.contains("check the token"), "{refused}");
    }

    // A reviewer's commit on the branch: imagegen leaves the branch and the pull request alone.
    let human = world.osob.commit_files(
        &world.osob.repo(),
        BRANCH,
        None,
        &[(
            "definitions/queues/extra.yml".to_string(),
            b"queues: []\n".to_vec(),
        )],
        "Add a queue by hand",
        "reviewer@osob.invalid",
    );
    let refused = world.run(&["pr"], 1);
    assert!(
        refused.contains("holds commits that are not imagegen's, so it was left untouched"),
        "{refused}"
    );
    assert_eq!(world.osob.tip(BRANCH), Some(human));
    assert_eq!(world.service.writes(), writes);
    assert_eq!(world.service.pulls(), pulls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_devops_over_a_local_path() {
    story(Provider::AzureDevOps, Transport::LocalPath).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_devops_over_https() {
    story(Provider::AzureDevOps, Transport::Https).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_over_a_local_path() {
    story(Provider::GitHub, Transport::LocalPath).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_over_https() {
    story(Provider::GitHub, Transport::Https).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_over_a_local_path() {
    story(Provider::Local, Transport::LocalPath).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_over_https() {
    story(Provider::Local, Transport::Https).await;
}

/// A pull-request service that answers without end: the binary stops reading at the limit,
/// says which URL answered too much, and reports the branch it pushed.
async fn a_service_answering_without_end_is_cut_off(provider: Provider) {
    use crate::common::raw_server::{Answer, raw_server};
    let address = raw_server(|_, _| Answer::Huge {
        size: 200 << 20,
        announced: false,
    });
    let api_url = format!("http://{address}");
    let repo = Repo::shipped();
    repo.map_to_local_osob();
    let mut mapping: serde_json::Value =
        serde_json::from_str(&repo.read("osob-mapping/osob.json")).expect("a mapping");
    mapping["provider"] = match provider {
        Provider::GitHub => serde_json::json!({
            "kind": "github",
            "owner": "dotnet",
            "repository": "helix-machines",
            "api_url": api_url,
        }),
        _ => serde_json::json!({
            "kind": "azure-devops",
            "organization": "dnceng",
            "project": "internal",
            "repository": "dotnet-helix-machines",
            "api_url": api_url,
        }),
    };
    repo.write(
        "osob-mapping/osob.json",
        &serde_json::to_string_pretty(&mapping).expect("a mapping"),
    );
    let ids = repo.definition_ids();
    let built: Vec<(&str, imagegen::state::JobStatus)> = ids
        .iter()
        .map(|id| (id.as_str(), imagegen::state::JobStatus::Succeeded))
        .collect();
    repo.record_ledger(&repo.read("variables.json"), &built);
    let osob = Osob::new();
    let output = tokio::task::block_in_place(|| {
        repo.imagegen()
            .env("IMAGEGEN_OSOB_URL", osob.url())
            .env("GITHUB_TOKEN", TOKEN)
            .env("AZURE_DEVOPS_PAT", TOKEN)
            .env_remove("SYSTEM_ACCESSTOKEN")
            .arg("pr")
            .output()
            .expect("run imagegen")
    });
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("more than the 4 MiB imagegen reads"),
        "{stderr}"
    );
    assert!(stderr.contains(&api_url), "the URL is named: {stderr}");
    assert!(
        stderr.contains("was pushed, but the pull request could not be opened"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_answering_without_end_is_cut_off() {
    a_service_answering_without_end_is_cut_off(Provider::GitHub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_devops_answering_without_end_is_cut_off() {
    a_service_answering_without_end_is_cut_off(Provider::AzureDevOps).await;
}
