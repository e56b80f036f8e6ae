//! A [`Plan`] as a pull-request comment: a hidden marker (so later runs edit the same
//! comment), a one-line verdict, a summary table in rollout order, the unchanged clusters in
//! one line, then a collapsible section per changed cluster with its field-level diff.
//! Sections are open for small plans and folded for large ones, and the whole stays under
//! GitHub's comment size limit.

use std::fmt::Write;

use serde_json::Value;

use super::{Against, ClusterChange, ClusterPlan, Plan};

/// The hidden marker that finds the plan comment again.
pub const MARKER: &str = "<!-- psql-fleet:plan -->";
/// GitHub refuses comments over 65,536 characters; stay well under it.
pub const MAX_COMMENT: usize = 60_000;
/// Up to this many changed clusters, their sections are shown open.
const OPEN_SECTIONS: usize = 3;
/// Unchanged clusters named before "and N more".
const UNCHANGED_NAMED: usize = 30;
/// Longest value shown in a table cell.
const MAX_CELL: usize = 120;

pub fn render(plan: &Plan) -> String {
    render_with_limit(plan, MAX_COMMENT)
}

/// Like [`render`], with `limit` characters as the size budget.
pub fn render_with_limit(plan: &Plan, limit: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "### psql-fleet plan\n");
    let against = match plan.against {
        Against::Revision => format!("`{}` → `{}`", plan.base, plan.head),
        Against::Live => format!("live clusters → `{}`", plan.head),
    };
    if !plan.valid {
        let _ = writeln!(
            out,
            "{against}: :x: **the head does not validate** ({} error{}); nothing would be applied.\n",
            plan.errors.len(),
            plural(plan.errors.len())
        );
        let _ = writeln!(out, "```text");
        for d in plan.errors.iter().chain(&plan.warnings) {
            let _ = writeln!(out, "{d}");
        }
        let _ = writeln!(out, "```");
        return out;
    }
    let s = &plan.summary;
    if s.changed == 0 {
        let _ = writeln!(
            out,
            "{against}: **no change** to any of the {} cluster{}.",
            s.clusters,
            plural(s.clusters)
        );
    } else {
        let _ = writeln!(
            out,
            "{against}: **{} of {} cluster{} change**: {} create{}, {} update{}, {} delete{}.",
            s.changed,
            s.clusters,
            plural(s.clusters),
            s.creates,
            plural(s.creates),
            s.updates,
            plural(s.updates),
            s.deletes,
            plural(s.deletes)
        );
    }
    match &plan.head_signature {
        Some(s) if s.trusted => {
            let _ = writeln!(out, "\n:lock: the head is {}.", s.detail);
        }
        Some(s) => {
            let _ = writeln!(
                out,
                "\n:warning: **the head is not signed by a trusted key** ({}): an agent run with `--verify-commits` refuses it.",
                s.detail
            );
        }
        None => {}
    }
    if let Some(why) = &plan.base_invalid {
        let _ = writeln!(
            out,
            "\n:warning: the base does not validate ({why}); every object is shown as created."
        );
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\n:warning: warnings:\n\n```text");
        for d in &plan.warnings {
            let _ = writeln!(out, "{d}");
        }
        let _ = writeln!(out, "```");
    }
    if !plan.rollout.is_empty() {
        let at_least = super::rules::at_least_ms(&plan.rollout);
        let _ = writeln!(
            out,
            "\nThe rollout will meet, per wave{}:\n",
            if at_least > 0 {
                format!(
                    " (at least {} once started: bake times; readiness, windows and approvals come on top)",
                    crate::rollout::human(at_least)
                )
            } else {
                String::new()
            }
        );
        for r in &plan.rollout {
            let code = |s: &String| format!("`{}`", s.replace('`', "'"));
            let mut parts = vec![r.summary()];
            parts.extend(r.gates.iter().map(|g| format!("gate {}", code(g))));
            parts.extend(r.windows.iter().map(|w| format!("window {}", code(w))));
            let _ = writeln!(out, "- wave **{}**: {}", escape(&r.wave), parts.join("; "));
        }
    }
    if !plan.clusters.is_empty() {
        let _ = writeln!(
            out,
            "\n| Wave | Cluster | Change | Create | Update | Delete |\n| --- | --- | --- | ---: | ---: | ---: |"
        );
        for (i, c) in plan.clusters.iter().enumerate() {
            // The table may take half the budget; the sections share the rest.
            if out.len() > limit / 2 {
                let left = plan.clusters.len() - i;
                let _ = writeln!(out, "| … | {left} more | | | | |");
                break;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                wave(c),
                c.name,
                change(c.change),
                c.creates.len(),
                c.updates.len(),
                c.deletes.len()
            );
        }
    }
    if !plan.unchanged.is_empty() {
        let named: Vec<&str> = plan
            .unchanged
            .iter()
            .take(UNCHANGED_NAMED)
            .map(String::as_str)
            .collect();
        let more = plan.unchanged.len() - named.len();
        let _ = write!(
            out,
            "\nUnchanged ({}): {}",
            plan.unchanged.len(),
            named.join(", ")
        );
        if more > 0 {
            let _ = write!(out, " and {more} more");
        }
        out.push('\n');
    }
    let open = plan.clusters.len() <= OPEN_SECTIONS;
    for (i, c) in plan.clusters.iter().enumerate() {
        let section = section(c, open);
        let left = plan.clusters.len() - i;
        let note = format!(
            "\n_{left} more cluster section{} left out to fit a comment; `psql-fleet plan -o json` lists every change._\n",
            plural(left)
        );
        if out.len() + section.len() + note.len() > limit {
            out.push_str(&note);
            break;
        }
        out.push_str(&section);
    }
    out
}

fn section(c: &ClusterPlan, open: bool) -> String {
    let mut out = String::new();
    let mut counts = Vec::new();
    for (n, what) in [
        (c.creates.len(), "create"),
        (c.updates.len(), "update"),
        (c.deletes.len(), "delete"),
    ] {
        if n > 0 {
            counts.push(format!("{n} {what}{}", plural(n)));
        }
    }
    if counts.is_empty() {
        counts.push(change(c.change).to_string());
    }
    let _ = writeln!(
        out,
        "\n<details{}><summary><b>{}</b> · wave {} · {}</summary>\n",
        if open { " open" } else { "" },
        c.name,
        wave(c),
        counts.join(", ")
    );
    match c.change {
        ClusterChange::Added => {
            let _ = writeln!(out, "The cluster joins the fleet.\n");
        }
        ClusterChange::Removed => {
            let _ = writeln!(
                out,
                "The cluster leaves the fleet: psql-fleet stops managing it and leaves its {} object{} in place.\n",
                c.unmanaged.len(),
                plural(c.unmanaged.len())
            );
        }
        ClusterChange::Unreachable => {
            let _ = writeln!(
                out,
                "Its live objects could not be read: {}\n",
                c.error.as_deref().unwrap_or("unknown error")
            );
        }
        ClusterChange::Changed => {}
    }
    for (moves, verb, what) in [
        (&c.gains, "gains", "created"),
        (&c.loses, "loses", "pruned"),
    ] {
        for m in moves {
            let n = m.objects.len();
            let _ = writeln!(
                out,
                "{} {verb} `{}`: its {n} object{} {} {what}.\n",
                c.name,
                m.claim,
                plural(n),
                if n == 1 { "is" } else { "are" }
            );
        }
    }
    for at in &c.creates {
        let _ = writeln!(out, "- **create** `{at}`");
    }
    for at in &c.deletes {
        let _ = writeln!(out, "- **delete** `{at}`");
    }
    for u in &c.updates {
        let _ = writeln!(
            out,
            "- **update** `{}`\n\n  | Field | Before | After |\n  | --- | --- | --- |",
            u.object
        );
        for f in &u.fields {
            let _ = writeln!(
                out,
                "  | `{}` | {} | {} |",
                escape(&f.path),
                cell(f.base.as_ref()),
                cell(f.head.as_ref())
            );
        }
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out.push_str("\n</details>\n");
    out
}

fn wave(c: &ClusterPlan) -> String {
    match &c.wave {
        Some(w) => format!("{} {w}", c.wave_index),
        None => format!("{} (no wave)", c.wave_index),
    }
}

fn change(c: ClusterChange) -> &'static str {
    match c {
        ClusterChange::Added => "added",
        ClusterChange::Changed => "changed",
        ClusterChange::Removed => "removed",
        ClusterChange::Unreachable => "unreachable",
    }
}

/// A value in a table cell: compact JSON in code, cut when long; `—` when unset.
fn cell(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "—".to_string();
    };
    let text = v.to_string();
    let text = if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    };
    format!("`{}`", escape(&text))
}

/// Keeps a cell inside its table column and code span.
fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('`', "'").replace('\n', " ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
