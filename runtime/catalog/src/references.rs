//! Which tables a script names: the relations its `INSERT INTO`s read and
//! write, including the tables of window table functions, less the names of
//! its own common table expressions. The controller resolves these against
//! the namespace's StreamTables.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query, TableFactor, Visit,
    Visitor,
};

use crate::ddl::ScriptStatement;

/// The tables of a script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptTables {
    /// Declared by the script's own `CREATE TABLE`s, in order.
    pub declared: Vec<String>,
    /// Named by its other statements (read or written), in name order.
    pub named: BTreeSet<String>,
}

impl ScriptTables {
    /// The tables the script names but does not declare.
    pub fn undeclared(&self) -> impl Iterator<Item = &String> {
        self.named.iter().filter(|n| !self.declared.contains(n))
    }
}

/// The tables `statements` declare and name.
pub fn script_tables(statements: &[ScriptStatement]) -> ScriptTables {
    let mut tables = ScriptTables::default();
    let mut names = Names::default();
    for statement in statements {
        match statement {
            ScriptStatement::CreateTable(table) => tables.declared.push(table.name.clone()),
            ScriptStatement::Set { .. } => {}
            ScriptStatement::Other(other) => {
                let _ = other.visit(&mut names);
            }
        }
    }
    tables.named = names
        .relations
        .into_iter()
        .filter(|n| !names.ctes.contains(n))
        .collect();
    tables
}

/// Collects relation names and common-table-expression names.
#[derive(Default)]
struct Names {
    relations: BTreeSet<String>,
    ctes: BTreeSet<String>,
}

/// The last part of a (possibly qualified) name.
fn last_part(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(|ident| ident.value.clone())
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.extend(last_part(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|cte| cte.alias.name.value.clone()),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // `TABLE(TUMBLE(TABLE bid, ...))`: the window's table is its first
        // plain identifier argument (the dialect reads `TABLE bid` as `bid`).
        if let TableFactor::TableFunction {
            expr: Expr::Function(function),
            ..
        } = factor
        {
            if let FunctionArguments::List(list) = &function.args {
                let table = list.args.iter().find_map(|arg| match arg {
                    FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(Expr::Identifier(ident)),
                        ..
                    }
                    | FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(ident))) => {
                        Some(ident.value.clone())
                    }
                    _ => None,
                });
                self.relations.extend(table);
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::parse_script;

    fn tables(sql: &str) -> ScriptTables {
        script_tables(&parse_script(sql).expect("script parses"))
    }

    #[test]
    fn inserts_name_their_target_their_sources_and_their_windows_tables() {
        let found = tables(
            "CREATE TABLE out1 (a BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out1 SELECT b.auction FROM bid b JOIN auction a ON b.auction = a.id;
             INSERT INTO clicks_by_minute SELECT window_start, COUNT(*)
               FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(at), INTERVAL '1' MINUTE))
               GROUP BY window_start, window_end;
             INSERT INTO out1 SELECT x FROM (SELECT price AS x FROM events.bid2) UNION ALL SELECT id FROM person",
        );
        assert_eq!(found.declared, vec!["out1".to_string()]);
        let named: Vec<_> = found.named.iter().map(String::as_str).collect();
        assert_eq!(
            named,
            [
                "auction",
                "bid",
                "bid2",
                "clicks",
                "clicks_by_minute",
                "out1",
                "person"
            ]
        );
        let undeclared: Vec<_> = found.undeclared().map(String::as_str).collect();
        assert_eq!(
            undeclared,
            [
                "auction",
                "bid",
                "bid2",
                "clicks",
                "clicks_by_minute",
                "person"
            ]
        );
    }

    #[test]
    fn common_table_expressions_are_not_tables() {
        let found = tables(
            "INSERT INTO sink WITH recent AS (SELECT * FROM bid WHERE price > 10)
             SELECT auction FROM recent",
        );
        let named: Vec<_> = found.named.iter().map(String::as_str).collect();
        assert_eq!(named, ["bid", "sink"]);
    }
}
