//! The bad-input corpus: each file in `tests/bad-input/cases/` is dropped into a copy of the
//! valid fleet in `tests/bad-input/base/` at the path its `# target:` line names; then
//! `psql-fleet validate` must exit 1, without a panic, printing every `# expect:` line.

use test_support as common;

use std::fs;
use std::path::{Path, PathBuf};

struct Case {
    name: String,
    target: String,
    expected: Vec<String>,
    contents: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let dir = common::root().join("tests/bad-input/cases");
    let mut cases: Vec<Case> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let contents = fs::read(&path).unwrap();
            // Headers are ASCII even in the files whose body is deliberately not UTF-8.
            let header = String::from_utf8_lossy(&contents).into_owned();
            let field = |key: &str| -> Vec<String> {
                header
                    .lines()
                    .filter_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
                    .collect()
            };
            Case {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                target: field("# target:")
                    .pop()
                    .unwrap_or_else(|| panic!("{}: no # target:", path.display())),
                expected: field("# expect:"),
                contents,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn fleet_with(case: &Case) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleet");
    common::files::copy_dir(&common::root().join("tests/bad-input/base"), &fleet);
    let target = fleet.join(&case.target);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(target, &case.contents).unwrap();
    (tmp, fleet)
}

#[test]
fn the_base_fleet_is_valid() {
    common::succeed(
        common::psql_fleet(["validate"]).arg(common::root().join("tests/bad-input/base")),
    );
}

#[test]
fn every_bad_input_gives_its_documented_error_and_exit_code_1() {
    let cases = cases();
    assert!(
        cases.len() >= 60,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (_tmp, fleet) = fleet_with(case);
        let (code, stderr) = validate(&fleet);
        if std::env::var_os("BAD_INPUT_SHOW").is_some() {
            eprintln!("== {}\n{stderr}", case.name);
        }
        if code != Some(1) {
            failures.push(format!(
                "{}: exit {code:?}, expected 1\n{stderr}",
                case.name
            ));
        }
        if stderr.contains("panicked") {
            failures.push(format!("{}: panicked\n{stderr}", case.name));
        }
        if case.expected.is_empty() {
            failures.push(format!("{}: no # expect: line", case.name));
        }
        for line in &case.expected {
            if !stderr.lines().any(|l| l == line) {
                failures.push(format!(
                    "{}: missing line\n  {line}\ngot:\n{stderr}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_fleet_renders_nothing() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "claim-unknown-spec-field")
        .unwrap();
    let (_tmp, fleet) = fleet_with(&case);
    let out = common::psql_fleet(["render"]).arg(&fleet).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "rendered despite errors");
}

/// Sets up one generated case at the path it is given.
type Prepare = Box<dyn FnOnce(&Path)>;

/// Runs `psql-fleet validate` on `fleet`; the exit code and stderr.
fn validate(fleet: &Path) -> (Option<i32>, String) {
    let out = common::psql_fleet(["validate"])
        .arg(fleet)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the base fleet with `prepare` applied to it.
fn base_with(prepare: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleet");
    common::files::copy_dir(&common::root().join("tests/bad-input/base"), &fleet);
    prepare(&fleet);
    (tmp, fleet)
}

/// Inputs too big, too deep or too odd to commit as files: generated here, each must give
/// exit 1 and a line naming the file (and the field where there is one), never a panic.
#[test]
fn generated_bad_inputs_are_refused_with_an_error_naming_the_file() {
    const CLAIM_HEAD: &str = "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: gen}\nspec:\n  clusterName: a\n";
    fn huge(fleet: &Path, path: &str, head: &str) {
        // Valid YAML all the way, so only the size can be the problem.
        let mut text = head.to_string();
        text.push_str(
            &"# padding padding padding padding padding padding padding\n".repeat(20_000),
        );
        fs::write(fleet.join(path), text).unwrap();
    }
    let cases: Vec<(&str, Prepare, &str)> = vec![
        (
            "a claim file over the size limit",
            Box::new(move |f| huge(f, "claims/huge.yaml", CLAIM_HEAD)),
            "claims/huge.yaml: file is ",
        ),
        (
            "a cluster file over the size limit",
            Box::new(|f| huge(f, "clusters/big.yaml", "kind: Cluster\n")),
            "clusters/big.yaml: file is ",
        ),
        (
            "fleet.yaml over the size limit",
            Box::new(|f| huge(f, "fleet.yaml", "kind: Fleet\n")),
            "fleet.yaml: file is ",
        ),
        (
            "values nested 100,000 levels deep",
            Box::new(move |f| {
                let deep = format!(
                    "{CLAIM_HEAD}  atlasOperator:\n    values: {{x: {}{}}}\n",
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                );
                fs::write(f.join("claims/deep.yaml"), deep).unwrap();
            }),
            "claims/deep.yaml:7:",
        ),
        (
            "a twelve-level billion-laughs alias bomb in values",
            Box::new(move |f| {
                let mut bomb = format!("{CLAIM_HEAD}  atlasOperator:\n    values:\n      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
                for i in 1..12 {
                    bomb.push_str(&format!(
                        "      l{i}: &l{i} [{}]\n",
                        vec![format!("*l{}", i - 1); 10].join(", ")
                    ));
                }
                fs::write(f.join("claims/bomb.yaml"), bomb).unwrap();
            }),
            "repetition limit exceeded",
        ),
        (
            "a claim file that is a link out of the tree",
            Box::new(|f| {
                let outside = f.parent().unwrap().join("outside.yaml");
                fs::write(&outside, CLAIM_HEAD).unwrap();
                std::os::unix::fs::symlink(&outside, f.join("claims/linked.yaml")).unwrap();
            }),
            "claims/linked.yaml: symbolic link points outside the fleet directory; refusing to follow it",
        ),
        (
            "a claims directory that is a link out of the tree",
            Box::new(|f| {
                let outside = f.parent().unwrap().join("elsewhere");
                fs::create_dir_all(&outside).unwrap();
                fs::write(outside.join("x.yaml"), CLAIM_HEAD).unwrap();
                std::os::unix::fs::symlink(&outside, f.join("claims/team")).unwrap();
            }),
            "claims/team: symbolic link points outside the fleet directory; refusing to follow it",
        ),
        (
            "a cluster file that is a link to /etc/passwd",
            Box::new(|f| {
                std::os::unix::fs::symlink("/etc/passwd", f.join("clusters/passwd.yaml")).unwrap();
            }),
            "clusters/passwd.yaml: symbolic link points outside the fleet directory; refusing to follow it",
        ),
        (
            "a dangling link",
            Box::new(|f| {
                std::os::unix::fs::symlink(f.join("nowhere.yaml"), f.join("claims/dangling.yaml"))
                    .unwrap();
            }),
            "claims/dangling.yaml: broken symbolic link",
        ),
        (
            "UTF-16 text (not UTF-8)",
            Box::new(move |f| {
                let mut bytes = vec![0xFF, 0xFE];
                bytes.extend(CLAIM_HEAD.encode_utf16().flat_map(u16::to_le_bytes));
                fs::write(f.join("claims/utf16.yaml"), bytes).unwrap();
            }),
            "claims/utf16.yaml:1:1: not valid UTF-8; fleet files must be UTF-8 encoded",
        ),
    ];
    let mut failures = Vec::new();
    for (what, prepare, expected) in cases {
        let (_tmp, fleet) = base_with(prepare);
        let (code, stderr) = validate(&fleet);
        if code != Some(1) || stderr.contains("panicked") || !stderr.contains(expected) {
            failures.push(format!(
                "{what}: exit {code:?}, expected 1 and a line with {expected:?}\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A file name and a map key can hold anything, escape sequences and newlines included:
/// `validate` shows them escaped, each diagnostic on its own line.
#[test]
fn control_characters_in_a_file_name_or_a_key_are_shown_escaped() {
    let (_tmp, fleet) = base_with(|f| {
        fs::write(
            f.join("claims/x\u{1b}[2J\nforged.yaml"),
            "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: ok, labels: {\"k\\t\\u009b\": x}}\nspec: {clusterName: a}\n",
        )
        .unwrap();
    });
    let (code, stderr) = validate(&fleet);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        !stderr
            .chars()
            .any(|c| c != '\n' && fleet_core::text::is_unsafe(c)),
        "{stderr:?}"
    );
    assert!(!stderr.lines().any(|l| l.starts_with("forged")), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            r"claims/x\u{1b}[2J\nforged.yaml:3:31: document 1: metadata.labels.k\t\u{9b}: "
        )),
        "{stderr}"
    );
}

/// What the loader leaves unread where fleet files live is a warning naming it, never
/// silence: the fleet stays valid (exit 0), and each skipped path is named.
#[test]
fn files_left_unread_are_warnings_naming_them() {
    const CLUSTER: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec: {kubeconfig: x.yaml}\n";
    let (_tmp, fleet) = base_with(|f| {
        fs::create_dir_all(f.join("clusters/sub")).unwrap();
        fs::write(f.join("clusters/sub/x.yaml"), CLUSTER).unwrap();
        fs::write(f.join("clusters/x.json"), "{}").unwrap();
        fs::write(f.join("claims/x.YAML"), "kind: Psql\n").unwrap();
        fs::write(f.join("clusters/empty.yaml"), "# nothing yet\n").unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(f.join("claims/pipe.yaml"))
            .status()
            .unwrap();
        assert!(fifo.success());
    });
    let out = common::psql_fleet(["validate"])
        .arg(&fleet)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for line in [
        "clusters/sub: warning: directory skipped: Cluster files are read from clusters/ itself, not from its subdirectories",
        "clusters/x.json: warning: skipped: fleet files are YAML; only files ending in .yaml or .yml are read",
        "claims/x.YAML: warning: skipped: only files ending in .yaml or .yml, in lowercase, are read",
        "clusters/empty.yaml: warning: holds no document, so no Cluster is read from it; skipped",
        "claims/pipe.yaml: warning: not a regular file (a FIFO); skipped",
    ] {
        assert!(stderr.lines().any(|l| l == line), "missing {line:?} in\n{stderr}");
    }
}

/// Selector claims that take every cluster, or none, are valid with a warning each; the
/// summary says how many claims the selectors placed.
#[test]
fn an_empty_selector_and_a_selector_matching_nothing_are_warnings() {
    let (_tmp, fleet) = base_with(|f| {
        fs::write(
            f.join("claims/everywhere.yaml"),
            "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: everywhere, namespace: everywhere}\nspec:\n  clusterSelector: {}\n  namespace: everywhere\n---\napiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: nowhere, namespace: nowhere}\nspec:\n  clusterSelector: {matchLabels: {env: qa}}\n",
        )
        .unwrap();
    });
    let out = common::psql_fleet(["validate"])
        .arg(&fleet)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for line in [
        "claims/everywhere.yaml:5:3: document 1: spec.clusterSelector: warning: the empty selector matches every cluster in the fleet, including clusters added later",
        "claims/everywhere.yaml:12:3: document 2: spec.clusterSelector: warning: matches none of the fleet's 2 clusters, so the claim renders nothing",
    ] {
        assert!(stderr.lines().any(|l| l == line), "missing {line:?} in\n{stderr}");
    }
    assert!(
        stdout.contains("valid: 2 clusters, 3 claims (2 placed by 1 selector claim), 2 warnings"),
        "{stdout}"
    );
}

/// A file over the size limit is refused with the size it has, not the size of what a
/// capped read saw.
#[test]
fn the_size_error_states_the_real_size_and_the_limit() {
    let size = 3 * 1024 * 1024 + 7;
    let (_tmp, fleet) = base_with(|f| {
        fs::write(f.join("claims/huge.yaml"), "#".repeat(size)).unwrap();
    });
    let (code, stderr) = validate(&fleet);
    assert_eq!(code, Some(1));
    let line =
        format!("claims/huge.yaml: file is {size} bytes, larger than the limit of 1048576 bytes");
    assert!(stderr.lines().any(|l| l == line), "{stderr}");
}

/// Kubeconfigs are read by the agent, not by `validate` (they are never in Git): each bad
/// one gives an error naming the cluster and the file, never a panic and never the file's
/// contents (the token below must not appear).
#[tokio::test]
async fn bad_kubeconfigs_give_an_error_naming_cluster_and_file_and_never_their_contents() {
    use psql_fleet::cluster::kubeconfig::{client, resolve, Source};
    const TOKEN: &str = "tok-6f1d2c9e-do-not-print";
    let good = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1'}}}}]\nusers: [{{name: u, user: {{token: {TOKEN}}}}}]\ncontexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]\ncurrent-context: ctx\n"
    );
    let creds = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("real.yaml"), &good).unwrap();
    let cases: Vec<(&str, Prepare, Option<&str>)> = vec![
        ("missing", Box::new(|_| {}), None),
        (
            "a directory",
            Box::new(|p| fs::create_dir(p).unwrap()),
            None,
        ),
        (
            "malformed YAML",
            Box::new(|p| {
                fs::write(
                    p,
                    format!("users: [{{name: u, user: {{token: {TOKEN}}}}}]\nthis: [is: not"),
                )
                .unwrap()
            }),
            None,
        ),
        (
            "not a kubeconfig",
            Box::new(|p| fs::write(p, format!("- {TOKEN}\n- two\n")).unwrap()),
            None,
        ),
        ("empty", Box::new(|p| fs::write(p, "").unwrap()), None),
        (
            "not UTF-8",
            Box::new(|p| fs::write(p, [0xff, 0xfe, 0x00, 0x80, b':', b' ', 0xc3]).unwrap()),
            None,
        ),
        (
            "a context the file lacks",
            Box::new({
                let good = good.clone();
                move |p| fs::write(p, good).unwrap()
            }),
            Some("admin@elsewhere"),
        ),
        (
            "certificate-authority-data that is not base64",
            Box::new(|p| {
                fs::write(
                    p,
                    format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1', certificate-authority-data: '!!{TOKEN}!!'}}}}]\nusers: [{{name: u, user: {{token: {TOKEN}}}}}]\ncontexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]\ncurrent-context: ctx\n"),
                )
                .unwrap()
            }),
            None,
        ),
        (
            "UTF-16 of odd length (kube-client 5 panics reading it)",
            Box::new(|p| fs::write(p, [0xff, 0xfe, b'a', 0, b'b']).unwrap()),
            None,
        ),
        (
            "larger than 1 MiB",
            Box::new({
                let good = good.clone();
                move |p| fs::write(p, format!("{good}{}", "#\n".repeat(600_000))).unwrap()
            }),
            None,
        ),
        (
            "a link out of the credentials directory",
            Box::new({
                let target = outside.path().join("real.yaml");
                move |p| std::os::unix::fs::symlink(target, p).unwrap()
            }),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, prepare, context)) in cases.into_iter().enumerate() {
        let file = format!("k{i}.yaml");
        prepare(&creds.path().join(&file));
        let spec = format!(
            "kubeconfig: {file}\n{}",
            context
                .map(|c| format!("context: {c}\n"))
                .unwrap_or_default()
        );
        let cluster = fleet_core::model::Cluster {
            origin: fleet_core::model::Origin {
                file: "clusters/c1.yaml".into(),
                document: 1,
            },
            name: "c1".into(),
            labels: Default::default(),
            spec: serde_yaml::from_str(&spec).unwrap(),
            kubeconfig_secret: None,
        };
        let result = match resolve(creds.path(), &cluster) {
            Ok(path) => client(&Source::File(path), &cluster, false, "psql-fleet-test")
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => failures.push(format!("{what}: a client was built")),
            Err(e) => {
                let e = e.to_string();
                if !e.contains("cluster c1") || !e.contains(&file) || e.contains(TOKEN) {
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
