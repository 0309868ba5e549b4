//! Lowers DataFusion's logical plan of each `INSERT INTO` onto weir's
//! streaming operators ([`StreamPlan`]), refusing what a stream cannot run
//! (or weir cannot yet) with the construct's name.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::tree_node::TreeNode;
use datafusion_common::{plan_err, Column, DFSchema, DFSchemaRef, Result};
use datafusion_expr::logical_plan::{
    Aggregate, Distinct, DmlStatement, Join, JoinType, SubqueryAlias, Window, WriteOp,
};
use datafusion_expr::utils::{conjunction, split_conjunction};
use datafusion_expr::{Expr, LogicalPlan};

use crate::sql::context::Context;
use crate::sql::early_fire::EarlyFire;
use crate::sql::join_bounds::time_bound;
use crate::sql::plan::{uid, Operator, PlanNode, StreamPlan};
use crate::sql::rank::{rank_bound, rank_column, row_number};
use crate::sql::window_lineage::{grouped_windows, table_function};
use crate::sql::window_tvf::{WindowKind, WindowSpec, WindowTvf};

/// Builds one [`StreamPlan`] from the `INSERT INTO`s of a script.
pub struct Lowering<'a> {
    context: &'a Context,
    plan: StreamPlan,
    /// Source nodes by table: every insert reading a table shares its source.
    sources: HashMap<String, usize>,
    /// The rank column and limit of a top-N filter being lowered, for the
    /// `ROW_NUMBER()` window below it.
    rank: Option<(String, usize)>,
    /// Whether the window table function being lowered feeds a window
    /// aggregate that assigns its windows (sessions, processing time).
    window_aggregate_assigns: bool,
    /// When window aggregates fire before their windows end.
    early_fire: Option<EarlyFire>,
}

impl<'a> Lowering<'a> {
    /// An empty plan over `context`'s tables, its window aggregates firing
    /// early as `early_fire` says.
    pub fn new(context: &'a Context, early_fire: Option<EarlyFire>) -> Self {
        Lowering {
            context,
            plan: StreamPlan::default(),
            sources: HashMap::new(),
            rank: None,
            window_aggregate_assigns: false,
            early_fire,
        }
    }

    /// The plan of every insert added, its operators told which of their
    /// `-U` rows are read.
    pub fn finish(mut self) -> StreamPlan {
        let context = self.context;
        self.plan.drop_unread_update_befores(|table| {
            context
                .table(table)
                .is_none_or(|t| !matches!(t.connector(), "upsert-kafka" | "blackhole"))
        });
        self.plan
    }

    /// Adds the plan of one `INSERT INTO`.
    pub fn insert(&mut self, plan: &LogicalPlan) -> Result<()> {
        let LogicalPlan::Dml(DmlStatement {
            table_name,
            op: WriteOp::Insert(_),
            input,
            output_schema,
            ..
        }) = plan
        else {
            return plan_err!("a SQL job's statements after its CREATE TABLEs are INSERT INTO ... SELECT ...; this is {}", plan.display());
        };
        let table = table_name.table().to_string();
        let Some(target) = self.context.table(&table) else {
            return plan_err!("INSERT INTO `{table}`: no such table");
        };
        let connector = target.connector().to_string();
        let input = self.lower(input)?;
        let updating = self.plan.nodes[input].updating;
        if updating && matches!(connector.as_str(), "kafka" | "filesystem") {
            return plan_err!(
                "INSERT INTO `{table}` (connector '{connector}', append only) cannot take an updating result (an unbounded GROUP BY, a top-N, an outer join or a window firing early): insert into an 'upsert-kafka' table with a PRIMARY KEY, or aggregate over a window that fires only at its end"
            );
        }
        if self
            .plan
            .nodes
            .iter()
            .any(|n| matches!(&n.operator, Operator::Sink { table: t } if *t == table))
        {
            return plan_err!(
                "table `{table}` is inserted into twice: UNION ALL the queries into one INSERT"
            );
        }
        self.add(
            Operator::Sink { table },
            vec![input],
            output_schema.clone(),
            updating,
        );
        Ok(())
    }

    /// Appends a node after its inputs; returns its index.
    fn add(
        &mut self,
        operator: Operator,
        inputs: Vec<usize>,
        schema: DFSchemaRef,
        updating: bool,
    ) -> usize {
        let input_uids: Vec<&str> = inputs
            .iter()
            .map(|&i| self.plan.nodes[i].uid.as_str())
            .collect();
        let uid = uid(&operator, &input_uids);
        // The same computation over the same input is one operator, whichever
        // inserts read it.
        if let Some(existing) = self.plan.nodes.iter().position(|n| n.uid == uid) {
            return existing;
        }
        self.plan.nodes.push(PlanNode {
            uid,
            operator,
            inputs,
            schema,
            updating,
            update_before: true,
        });
        self.plan.nodes.len() - 1
    }

    /// Lowers `plan`; returns the index of the node that emits its rows.
    fn lower(&mut self, plan: &LogicalPlan) -> Result<usize> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let table = scan.table_name.table().to_string();
                let source = match self.sources.get(&table) {
                    Some(&source) => source,
                    None => {
                        let schema = Arc::new(DFSchema::try_from_qualified_schema(
                            scan.table_name.clone(),
                            &scan.source.schema(),
                        )?);
                        let node = self.add(Operator::Source { table: table.clone(), projection: None }, vec![], schema, false);
                        self.sources.insert(table, node);
                        node
                    }
                };
                let mut node = source;
                if let Some(projection) = &scan.projection {
                    let exprs = projection
                        .iter()
                        .map(|&i| Expr::Column(Column::new(Some(scan.table_name.clone()), scan.source.schema().field(i).name())))
                        .collect();
                    node = self.add(Operator::Project { exprs }, vec![node], scan.projected_schema.clone(), false);
                }
                for predicate in &scan.filters {
                    refuse_subqueries(predicate)?;
                    node = self.add(Operator::Filter { predicate: predicate.clone() }, vec![node], scan.projected_schema.clone(), false);
                }
                Ok(node)
            }
            LogicalPlan::Filter(filter) => {
                // `WHERE rn <= N` on a ROW_NUMBER() below: the top-N keeps
                // only those rows, so that condition goes; any other is a
                // filter of the top-N's rows.
                let conjuncts = split_conjunction(&filter.predicate);
                for (k, conjunct) in conjuncts.iter().enumerate() {
                    let Some((column, limit)) = rank_bound(conjunct) else { continue };
                    let Some(rank) = rank_column(&filter.input, &column) else { continue };
                    let outer = self.rank.replace((rank, limit));
                    let node = self.lower(&filter.input);
                    self.rank = outer;
                    let node = node?;
                    let rest = conjuncts.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, c)| (*c).clone());
                    let Some(predicate) = conjunction(rest) else { return Ok(node) };
                    refuse_subqueries(&predicate)?;
                    return Ok(self.add(Operator::Filter { predicate }, vec![node], filter.input.schema().clone(), true));
                }
                refuse_subqueries(&filter.predicate)?;
                let input = self.lower(&filter.input)?;
                let updating = self.plan.nodes[input].updating;
                Ok(self.add(Operator::Filter { predicate: filter.predicate.clone() }, vec![input], filter.input.schema().clone(), updating))
            }
            LogicalPlan::Projection(projection) => {
                projection.expr.iter().try_for_each(refuse_subqueries)?;
                let input = self.lower(&projection.input)?;
                let updating = self.plan.nodes[input].updating;
                Ok(self.add(Operator::Project { exprs: projection.expr.clone() }, vec![input], projection.schema.clone(), updating))
            }
            LogicalPlan::SubqueryAlias(alias) => self.alias(alias),
            LogicalPlan::Extension(extension) => {
                let Some(tvf) = extension.node.as_any().downcast_ref::<WindowTvf>() else {
                    return plan_err!("{} is not supported in a streaming query", extension.node.name());
                };
                let assigned_by_aggregate = std::mem::take(&mut self.window_aggregate_assigns);
                if tvf.spec.assigned_by_aggregate() && !assigned_by_aggregate {
                    return plan_err!(
                        "{}: these windows are supported only under GROUP BY window_start, window_end (a window aggregate), as in Flink",
                        tvf.spec
                    );
                }
                let input = self.lower(&tvf.input)?;
                Ok(self.add(Operator::Windows { spec: tvf.spec.clone() }, vec![input], tvf.schema.clone(), false))
            }
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate),
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let node = self.lower(input)?;
                let keys = input.schema().columns().into_iter().map(Expr::Column).collect();
                Ok(self.add(Operator::Aggregate { keys, aggregates: vec![] }, vec![node], input.schema().clone(), true))
            }
            LogicalPlan::Union(union) => {
                let inputs = union.inputs.iter().map(|i| self.lower(i)).collect::<Result<Vec<_>>>()?;
                let updating = inputs.iter().any(|&i| self.plan.nodes[i].updating);
                Ok(self.add(Operator::Union, inputs, union.schema.clone(), updating))
            }
            LogicalPlan::Join(join) => self.join(join),
            LogicalPlan::Window(window) => self.top_n(window),
            LogicalPlan::Sort(_) => plan_err!("ORDER BY is not supported on an unbounded stream: sort inside ROW_NUMBER() OVER (... ORDER BY ...) for a top-N"),
            LogicalPlan::Limit(_) => plan_err!("LIMIT is not supported on an unbounded stream: use ROW_NUMBER() OVER (...) with WHERE rn <= N for a top-N"),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => plan_err!("a query without a table (VALUES or SELECT of constants) is not a stream"),
            other => plan_err!("{} is not supported in a streaming query", other.display()),
        }
    }

    /// `FROM t AS a`, `(SELECT ...) AS a`: the same rows, their columns
    /// qualified by the alias (a projection that only renames, so that each
    /// alias of one table is its own node).
    fn alias(&mut self, alias: &SubqueryAlias) -> Result<usize> {
        let input = self.lower(&alias.input)?;
        let from = self.plan.nodes[input].schema.clone();
        if from.as_ref() == alias.schema.as_ref() {
            return Ok(input);
        }
        let exprs = from
            .iter()
            .zip(alias.schema.iter())
            .map(|((qualifier, field), (to, renamed))| {
                Expr::Column(Column::new(qualifier.cloned(), field.name()))
                    .alias_qualified(to.cloned(), renamed.name())
            })
            .collect();
        let updating = self.plan.nodes[input].updating;
        Ok(self.add(
            Operator::Project { exprs },
            vec![input],
            alias.schema.clone(),
            updating,
        ))
    }

    /// `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` under a filter
    /// `rn <= N`: a top-N, whose output is the ranks' changes.
    fn top_n(&mut self, window: &Window) -> Result<usize> {
        let (partition, order) = row_number(window)?;
        let rank = window.schema.fields().last().map(|f| f.name().clone());
        let limit = match self.rank.take() {
            Some((column, limit)) if Some(&column) == rank.as_ref() => limit,
            _ => {
                return plan_err!(
                    "OVER: ROW_NUMBER() is supported as a top-N, filtered by WHERE rn <= N (or rn = 1, a deduplication) right above it"
                )
            }
        };
        if limit == 0 {
            return plan_err!("OVER: WHERE rn <= 0 keeps no row");
        }
        let input = self.lower(&window.input)?;
        if self.plan.nodes[input].updating {
            return plan_err!(
                "OVER: a top-N of an updating result (an unbounded GROUP BY) is not supported yet"
            );
        }
        let operator = Operator::TopN {
            partition,
            order,
            limit,
        };
        Ok(self.add(operator, vec![input], window.schema.clone(), true))
    }

    /// `JOIN ... ON`: an equi-join of two append-only inputs, inner or
    /// outer (a regular outer join's result is updating); one of two window
    /// results on their windows' ends is a window join, and with both bounds
    /// on the two sides' event times an interval join.
    fn join(&mut self, join: &Join) -> Result<usize> {
        let preserved = match join.join_type {
            JoinType::Inner => [false, false],
            JoinType::Left => [true, false],
            JoinType::Right => [false, true],
            JoinType::Full => [true, true],
            other => {
                return plan_err!(
                    "JOIN of kind {} is not supported yet; inner, LEFT, RIGHT and FULL joins are",
                    other.to_string().to_uppercase()
                )
            }
        };
        if join.on.is_empty() {
            return plan_err!(
                "JOIN without an equality of the two sides' columns (a cross join) is not supported: join ON a.k = b.k"
            );
        }
        let left = self.lower(&join.left)?;
        let right = self.lower(&join.right)?;
        let updating = self.plan.nodes[left].updating || self.plan.nodes[right].updating;
        let outer = preserved.contains(&true);
        if updating && outer {
            return plan_err!(
                "JOIN ({:?}) of an updating result (an unbounded GROUP BY, a top-N, an outer join or a window firing early) is not supported yet: an inner JOIN is",
                join.join_type
            );
        }
        let time_bound = time_bound(join, self.context).map(Box::new);
        if updating && time_bound.is_some() {
            return plan_err!(
                "JOIN of an updating result bounded by event time (a window or an interval join) is not supported: such a join forgets rows by the watermark, and an updating result may take them back later"
            );
        }
        let has_bound = time_bound.is_some();
        let operator = Operator::Join {
            on: join.on.clone(),
            filter: join.filter.clone(),
            time_bound,
            preserved,
        };
        // A regular outer join pads rows as they arrive and takes the padded
        // ones back when partners come; one bounded by event time pads them
        // once they can pair no more, and only appends.
        let appends = !updating && (!outer || has_bound);
        Ok(self.add(operator, vec![left, right], join.schema.clone(), !appends))
    }

    /// `GROUP BY`: over a window table function's `window_start` and
    /// `window_end` (or the columns carrying an upstream window aggregate's),
    /// a window aggregate; otherwise an updating one.
    fn aggregate(&mut self, aggregate: &Aggregate) -> Result<usize> {
        let windows = grouped_windows(&aggregate.input, &aggregate.group_expr);
        if let Some((spec, None)) = &windows {
            sessions_per_group(spec, &aggregate.group_expr)?;
            self.window_aggregate_assigns = spec.assigned_by_aggregate();
        }
        let input = self.lower(&aggregate.input);
        self.window_aggregate_assigns = false;
        let input = input?;
        let aggregates = aggregate.aggr_expr.clone();
        let direct = table_function(&aggregate.input);
        if self.plan.nodes[input].updating && (windows.is_some() || direct.is_some()) {
            return plan_err!(
                "a window aggregate over an updating result (an unbounded GROUP BY, a top-N, an outer join or a window firing early) is not supported: windows need rows that are never taken back"
            );
        }
        match (windows, direct) {
            (Some((spec, Some(_))), _) if spec.processing_time => plan_err!(
                "GROUP BY the windows of a window aggregate over {spec}: supported on event time only (processing-time results carry no time to close the windows by)"
            ),
            (Some((spec, _)), _) if self.early_fire.is_some() && matches!(spec.kind, WindowKind::Session { .. }) => plan_err!(
                "{spec} with SET 'table.exec.emit.early-fire.enabled': early firing of SESSION windows is not supported (TUMBLE, HOP and CUMULATE windows fire early)"
            ),
            (Some((spec, upstream)), _) => {
                let groups = aggregate.group_expr.clone();
                let early_fire = self.early_fire;
                let operator = Operator::WindowAggregate { spec, groups, aggregates, upstream, early_fire };
                Ok(self.add(operator, vec![input], aggregate.schema.clone(), early_fire.is_some()))
            }
            (None, Some(spec)) => plan_err!(
                "GROUP BY over {spec} must group by window_start and window_end (as in Flink), not only {}",
                aggregate.group_expr.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
            ),
            (None, None) => Ok(self.add(
                Operator::Aggregate { keys: aggregate.group_expr.clone(), aggregates },
                vec![input],
                aggregate.schema.clone(),
                true,
            )),
        }
    }
}

/// Refuses a subquery inside an expression (`EXISTS`, `IN (SELECT ...)`, a
/// scalar subquery), which weir does not run.
fn refuse_subqueries(expr: &Expr) -> Result<()> {
    let subquery = expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
        ))
    })?;
    if subquery {
        return plan_err!(
            "a subquery in an expression (EXISTS, IN (SELECT ...) or a scalar subquery) is not supported: `{expr}`; write it as a JOIN"
        );
    }
    Ok(())
}

/// Refuses `SESSION(... PARTITION BY k ...)` grouped without `k`: a window
/// aggregate keeps sessions per GROUP BY key, so the partition keys must be
/// among them.
fn sessions_per_group(spec: &WindowSpec, groups: &[Expr]) -> Result<()> {
    let WindowKind::Session { keys, .. } = &spec.kind else {
        return Ok(());
    };
    for key in keys {
        let grouped = groups
            .iter()
            .any(|g| matches!(g, Expr::Column(c) if c.name.eq_ignore_ascii_case(key)));
        if !grouped {
            return plan_err!(
                "{spec}: GROUP BY must include the PARTITION BY column `{key}` (sessions are kept per GROUP BY key)"
            );
        }
    }
    Ok(())
}
