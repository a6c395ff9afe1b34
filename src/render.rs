//! Text renderings shared by the commands and the progress reporter: the pipeline graph, byte
//! sizes, and what a failed command's exit status means.

use camel_engine::Plan;

use crate::cli::DagFormat;

/// The pipeline's graph of stages as text, Graphviz dot or Mermaid.
pub fn render_dag(plan: &Plan, format: DagFormat) -> String {
    let mut s = String::new();
    let edges = |i: usize| {
        plan.stages[i].inputs.iter().filter_map(|(name, input)| match input {
            camel_engine::InputRef::Stage { name: up, output, .. } => {
                Some((up.clone(), output.clone(), name.clone()))
            }
            _ => None,
        })
    };
    match format {
        DagFormat::Text => {
            for &i in &plan.order {
                let st = &plan.stages[i];
                s.push_str(&format!("{} ({})\n", st.name, st.bound.kind()));
                for (name, input) in &st.inputs {
                    s.push_str(&format!("  {name} <- {}\n", input.describe()));
                }
            }
        }
        DagFormat::Dot => {
            s.push_str(&format!("digraph {:?} {{\n  rankdir=LR;\n", plan.name));
            for &i in &plan.order {
                let st = &plan.stages[i];
                s.push_str(&format!("  {:?} [label=\"{}\\n({})\"];\n", st.name, st.name, st.bound.kind()));
                for (up, output, input) in edges(i) {
                    s.push_str(&format!(
                        "  {:?} -> {:?} [label={:?}];\n",
                        up,
                        st.name,
                        format!("{output} → {input}")
                    ));
                }
            }
            s.push_str("}\n");
        }
        DagFormat::Mermaid => {
            s.push_str("graph LR\n");
            for &i in &plan.order {
                let st = &plan.stages[i];
                s.push_str(&format!("  {}[\"{} ({})\"]\n", st.name, st.name, st.bound.kind()));
                for (up, output, input) in edges(i) {
                    s.push_str(&format!("  {up} -->|{output} → {input}| {}\n", st.name));
                }
            }
        }
    }
    s
}

/// `n` bytes with a binary unit (`1.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// What a stage failure's message leaves unsaid: the shell's own exit statuses (a command that
/// was not found, a file that is not executable) and where the command's own words are. The
/// command's output itself is not shown: it is the user's (it may quote notes), and stays in the
/// stage's log.
pub fn failure_hint(message: &str) -> Option<&'static str> {
    let status = message.rsplit_once("exited with status ")?.1.trim();
    // A message that goes on after the status already says why.
    if status.is_empty() || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match status {
        "127" => "127: the shell found no such command or file; the log's last lines say which",
        "126" => "126: a file the command runs is not executable; the log's last lines say which",
        _ => "the log's last lines hold the command's own error",
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_statuses_are_explained() {
        let hint = |m: &str| super::failure_hint(m);
        assert!(
            hint("the command exited with status 127").unwrap().starts_with("127: the shell found no such")
        );
        assert!(hint("the command exited with status 126").unwrap().starts_with("126: a file"));
        assert!(hint("the command exited with status 1").unwrap().starts_with("the log's last lines"));
        assert_eq!(hint("camel-torch-worker exited with status 1: out of memory"), None);
        assert_eq!(hint("no block"), None);
    }
}
