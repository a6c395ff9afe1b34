//! Text renderings shared by the commands and the progress reporter: the pipeline graph and byte
//! sizes.

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
