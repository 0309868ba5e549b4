//! `weir sql --explain`: the streaming plan as a tree per `INSERT INTO`, each
//! operator with its uid and the state it keeps.

use std::fmt::Write;

use crate::sql::context::Tables;
use crate::sql::plan::{Operator, StreamPlan};
use crate::sql::window_tvf::ms;

/// The plan as text: one tree per sink, from the sink down to its sources.
pub fn explain(plan: &StreamPlan, tables: &Tables) -> String {
    let mut text = String::new();
    for (index, node) in plan.nodes.iter().enumerate() {
        if let Operator::Sink { table } = &node.operator {
            let connector = tables.get(table).map_or("", |t| t.connector());
            let _ = writeln!(text, "INSERT INTO {table} ({connector})");
            tree(plan, tables, index, 1, &mut text);
            text.push('\n');
        }
    }
    text.push_str(
        "SQL aggregates and joins keep their state on the heap, checkpointed by key group as Arrow IPC;\n\
         it is restored by uid from a checkpoint or savepoint of the same query.\n",
    );
    text
}

/// Writes node `index` at `depth`, then its inputs below it.
fn tree(plan: &StreamPlan, tables: &Tables, index: usize, depth: usize, text: &mut String) {
    let node = &plan.nodes[index];
    let indent = "  ".repeat(depth);
    let mut line = format!("{indent}{:<34} {}", node.uid, node.operator.describe());
    if let Operator::Source { table, .. } = &node.operator {
        if let Some(table) = tables.get(table) {
            let topic = table.location().unwrap_or("-");
            let format = table.format().unwrap_or("-");
            let _ = write!(line, " ({}: {topic}, {format}", table.connector());
            if let Some(watermark) = &table.watermark {
                let _ = write!(
                    line,
                    "; watermark {} - {}",
                    watermark.column,
                    ms(watermark.delay_ms)
                );
            }
            line.push(')');
        }
    }
    if node.updating {
        line.push_str(match node.update_before {
            true => " [updating]",
            false => " [updating, no -U: its sinks take new rows only]",
        });
    }
    if let Some(state) = node.operator.state() {
        let _ = write!(line, "\n{indent}{:<34}   state: {state}", "");
    }
    text.push_str(&line);
    text.push('\n');
    for &input in &node.inputs {
        tree(plan, tables, input, depth + 1, text);
    }
}
