//! Builds the job graph of a planned SQL script: each node of the
//! [`StreamPlan`] becomes weir operators over [`Rows`] with the node's uid,
//! sources and sinks become their connectors'.

use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::compute::SortOptions;
use datafusion_common::arrow::datatypes::{DataType, Field};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_expr::{Expr, ExprSchemable};
use datafusion_physical_expr::PhysicalExpr;
use weir_catalog::Table;

use crate::api::{JobBuilder, JobGraph, Stream};
use crate::data::Either;
use crate::error::{Error, Result};
use crate::kafka::{Guarantee, KafkaConfig, KafkaSink};
use crate::operators::{DiscardSink, FileSink, StdoutSink, TextFileSource, WatermarkStrategy};
use crate::pipelines::generator::{GeneratorSource, SplitWatermarks};
use crate::pipelines::nexmark::model::{Event, NexmarkEvents};
use crate::sql::aggregates::AggregateCall;
use crate::sql::arrow_types::table_schema;
use crate::sql::avro_records::{AvroRecords, AvroRecordsSpec};
use crate::sql::calc::{physical, Calc};
use crate::sql::encode::{json_lines, lines, print_lines, JsonRecords};
use crate::sql::join::{ForgetRows, JoinSpec, RegularJoin};
use crate::sql::join_bounds::{Forget, TimeBound};
use crate::sql::join_split::{either_weight, SideSplitter};
use crate::sql::json_rows::{JsonRows, JsonRowsSpec};
use crate::sql::kafka_source::{kafka_config, KafkaTable};
use crate::sql::key_groups::{hashable, KeySplitter};
use crate::sql::nexmark::NexmarkTable;
use crate::sql::plan::{is_window_column, Operator, PlanNode, StreamPlan};
use crate::sql::rows::Rows;
use crate::sql::session_aggregate::{SessionAggregate, SessionAggregateSpec};
use crate::sql::top_n::{TopN, TopNSpec};
use crate::sql::updating_aggregate::{UpdatingAggregate, UpdatingAggregateSpec};
use crate::sql::upsert_records::{Upsert, UpsertRecords, UpsertSpec};
use crate::sql::window_aggregate::{GroupColumn, WindowAggregate, WindowAggregateSpec};
use crate::sql::window_lineage::WindowBounds;
use crate::sql::window_tvf::WindowKind;
use crate::sql::windows::{millis, AssignWindows, Assigner};
use crate::sql::PlannedScript;

/// How much of a buffer between tasks a [`Rows`] fills: its rows.
fn weight(rows: &Rows) -> usize {
    rows.len()
}

/// The job `name` running `planned` at `parallelism`.
pub fn build_job(name: &str, planned: &PlannedScript, parallelism: u32) -> Result<JobGraph> {
    let mut job = JobBuilder::new(name);
    job.parallelism(parallelism);
    let plan = &planned.plan;
    let mut streams: Vec<Option<Stream<Rows>>> = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        let input = |i: usize| -> Result<Stream<Rows>> {
            node.inputs
                .get(i)
                .and_then(|&n| streams[n].clone())
                .ok_or_else(|| Error::Internal(format!("operator {} lacks its input", node.uid)))
        };
        let table = |name: &str| -> Result<&Table> {
            planned
                .tables
                .get(name)
                .ok_or_else(|| Error::Sql(format!("no table `{name}`")))
        };
        let stream = match &node.operator {
            Operator::Source { table: name, .. } => Some(source(&job, table(name)?, node)?),
            Operator::Filter { predicate } => {
                let predicate = physical(predicate, input_schema(plan, node)?)?;
                Some(
                    input(0)?
                        .transform(node.operator.kind(), move |_| {
                            Calc::Filter(predicate.clone())
                        })
                        .uid(&node.uid),
                )
            }
            Operator::Project { exprs } => {
                let schema = input_schema(plan, node)?;
                let exprs = exprs
                    .iter()
                    .map(|e| physical(e, schema))
                    .collect::<Result<Vec<_>>>()?;
                let output = Arc::clone(node.schema.inner());
                Some(
                    input(0)?
                        .transform(node.operator.kind(), move |_| {
                            Calc::Project(exprs.clone(), output.clone())
                        })
                        .uid(&node.uid),
                )
            }
            Operator::Windows { spec } => {
                let assigner = if spec.assigned_by_aggregate() {
                    None
                } else {
                    Some(Assigner::new(&spec.kind, spec.offset_ms)?)
                };
                let schema = input_schema(plan, node)?;
                let time = schema
                    .index_of_column_by_name(None, &spec.time_column)
                    .ok_or_else(|| {
                        Error::Sql(format!("{spec}: no column `{}`", spec.time_column))
                    })?;
                let output = Arc::clone(node.schema.inner());
                Some(
                    input(0)?
                        .transform(node.operator.kind(), move |_| {
                            AssignWindows::new(assigner, time, output.clone())
                        })
                        .uid(&node.uid),
                )
            }
            Operator::WindowAggregate {
                spec: windows,
                groups,
                aggregates,
                upstream,
                early_fire,
            } => {
                let mut spec = window_aggregate(plan, node, groups, aggregates, upstream.as_ref())?;
                spec.early_fire = *early_fire;
                let splitter = Arc::new(KeySplitter::new(spec.keys.clone()));
                let stream = match &windows.kind {
                    // An upstream window aggregate's windows are read as they are.
                    _ if upstream.is_some() => {
                        let spec = Arc::new(spec);
                        input(0)?.transform_split(node.operator.kind(), splitter, move |_| {
                            WindowAggregate::new(spec.clone())
                        })
                    }
                    WindowKind::Session { gap_ms, .. } => {
                        let spec = Arc::new(session_aggregate(
                            plan,
                            node,
                            spec,
                            *gap_ms,
                            windows.processing_time,
                        )?);
                        input(0)?.transform_split(node.operator.kind(), splitter, move |_| {
                            SessionAggregate::new(spec.clone())
                        })
                    }
                    kind => {
                        if windows.processing_time {
                            spec.processing_time = Some(Assigner::new(kind, windows.offset_ms)?);
                        }
                        let spec = Arc::new(spec);
                        input(0)?.transform_split(node.operator.kind(), splitter, move |_| {
                            WindowAggregate::new(spec.clone())
                        })
                    }
                };
                Some(stream.uid(&node.uid))
            }
            Operator::Aggregate { keys, aggregates } => {
                let spec = Arc::new(updating_aggregate(
                    plan,
                    node,
                    keys,
                    aggregates,
                    planned.settings.state_ttl,
                )?);
                let splitter = Arc::new(KeySplitter::new(spec.keys.clone()));
                let stream = input(0)?.transform_split(node.operator.kind(), splitter, move |_| {
                    UpdatingAggregate::new(spec.clone())
                });
                Some(stream.uid(&node.uid))
            }
            Operator::Join {
                on,
                filter,
                time_bound,
                preserved,
            } => {
                let mut spec =
                    join_spec(plan, node, on, filter.as_ref(), planned.settings.state_ttl)?;
                if let Some(bound) = time_bound {
                    let [left, right] = bound.forget();
                    let time = |f: &Forget, side: usize| -> Result<ForgetRows> {
                        Ok(ForgetRows {
                            time: physical(&f.time, input_dfschema(plan, node, side)?)?,
                            after_ms: f.after_ms,
                        })
                    };
                    spec.forget = Some([time(left, 0)?, time(right, 1)?]);
                    if let TimeBound::Interval { event_time, .. } = &**bound {
                        spec.event_time = Some([
                            physical(&event_time[0], input_dfschema(plan, node, 0)?)?,
                            physical(&event_time[1], input_dfschema(plan, node, 1)?)?,
                        ]);
                    }
                }
                spec.preserved = *preserved;
                let spec = Arc::new(spec);
                let splitter = Arc::new(SideSplitter::new(spec.keys.clone()));
                let left = input(0)?
                    .map(&format!("{}-left", node.uid), Either::<Rows, Rows>::Left)
                    .uid(&format!("{}-left", node.uid))
                    .weighed(either_weight);
                let right = input(1)?
                    .map(&format!("{}-right", node.uid), Either::<Rows, Rows>::Right)
                    .uid(&format!("{}-right", node.uid))
                    .weighed(either_weight);
                let stream = left.union(right).weighed(either_weight).transform_split(
                    node.operator.kind(),
                    splitter,
                    move |_| RegularJoin::new(spec.clone()),
                );
                Some(stream.uid(&node.uid))
            }
            Operator::TopN {
                partition,
                order,
                limit,
            } => {
                let spec = Arc::new(top_n_spec(plan, node, partition, order, *limit)?);
                let splitter = Arc::new(KeySplitter::new(spec.partition.clone()));
                let stream = input(0)?.transform_split(node.operator.kind(), splitter, move |_| {
                    TopN::new(spec.clone())
                });
                Some(stream.uid(&node.uid))
            }
            Operator::Union => {
                let mut union = input(0)?;
                for i in 1..node.inputs.len() {
                    union = union.union(input(i)?);
                }
                Some(union)
            }
            Operator::Sink { table: name } => {
                sink(input(0)?, table(name)?, node)?;
                None
            }
        };
        streams.push(stream.map(|s| s.weighed(weight)));
    }
    job.build()
}

/// The schema of `node`'s first input.
fn input_schema<'a>(
    plan: &'a StreamPlan,
    node: &PlanNode,
) -> Result<&'a datafusion_common::DFSchema> {
    node.inputs
        .first()
        .map(|&i| plan.nodes[i].schema.as_ref())
        .ok_or_else(|| Error::Internal(format!("operator {} has no input", node.uid)))
}

/// The window aggregate of `node`, its expressions made physical.
fn window_aggregate(
    plan: &StreamPlan,
    node: &PlanNode,
    groups: &[Expr],
    aggregates: &[Expr],
    upstream: Option<&WindowBounds>,
) -> Result<WindowAggregateSpec> {
    let input = input_schema(plan, node)?;
    let (start, end) = match upstream {
        Some(bounds) => (bounds.start.as_str(), bounds.end.as_str()),
        None => ("window_start", "window_end"),
    };
    let column = |name: &str| -> Result<_> {
        let expr = groups
            .iter()
            .find(|e| matches!(e, Expr::Column(c) if c.name == name))
            .cloned()
            .unwrap_or_else(|| Expr::Column(datafusion_common::Column::new_unqualified(name)));
        physical(&expr, input)
    };
    let mut columns = Vec::with_capacity(groups.len());
    let mut key_exprs = Vec::new();
    for group in groups {
        columns.push(match group {
            Expr::Column(c) if c.name == start => GroupColumn::Start,
            Expr::Column(c) if c.name == end => GroupColumn::End,
            Expr::Column(_) if upstream.is_none() && is_window_column(group) => GroupColumn::Time,
            key => {
                key_exprs.push(key);
                GroupColumn::Key(key_exprs.len() - 1)
            }
        });
    }
    // A window without keys groups all its rows under one constant key.
    let (keys, key_types) = physical_keys(&key_exprs, input)?;
    let window_type = input
        .field_with_unqualified_name(start)
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Timestamp(
            datafusion_common::arrow::datatypes::TimeUnit::Millisecond,
            None,
        ));
    let calls = aggregates
        .iter()
        .map(|a| AggregateCall::lower(a, input))
        .collect::<Result<Vec<_>>>()?;
    Ok(WindowAggregateSpec {
        columns,
        keys,
        start: column(start)?,
        end: column(end)?,
        window_type,
        calls,
        schema: Arc::clone(node.schema.inner()),
        converter: WindowAggregateSpec::converter(&key_types)?,
        key_types,
        processing_time: None,
        early_fire: None,
    })
}

/// The session window aggregate of `node`: its grouping and calls, and the
/// columns it keeps of each row until the row's session closes.
fn session_aggregate(
    plan: &StreamPlan,
    node: &PlanNode,
    window: WindowAggregateSpec,
    gap_ms: u64,
    processing_time: bool,
) -> Result<SessionAggregateSpec> {
    let input = input_schema(plan, node)?.as_arrow();
    let mut kept: Vec<Field> = window
        .key_types
        .iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("key_{i}"), t.clone(), true))
        .collect();
    for call in &window.calls {
        kept.extend(call.input_fields(input)?);
    }
    Ok(SessionAggregateSpec {
        window,
        gap: i64::try_from(gap_ms).unwrap_or(i64::MAX),
        processing_time,
        kept,
    })
}

/// Grouping keys made physical, and their types.
type PhysicalKeys = (Vec<Arc<dyn PhysicalExpr>>, Vec<DataType>);

/// The keys `groups` over `input` made physical, with their types; a
/// constant key when there are none (one group for all rows).
fn physical_keys(groups: &[&Expr], input: &datafusion_common::DFSchema) -> Result<PhysicalKeys> {
    let mut keys = Vec::with_capacity(groups.len().max(1));
    let mut types = Vec::with_capacity(groups.len().max(1));
    for key in groups {
        let data_type = key
            .get_type(input)
            .map_err(|e| Error::Sql(format!("GROUP BY {key}: {e}")))?;
        if !hashable(&data_type) {
            return Err(Error::Sql(format!(
                "GROUP BY {key}: a key of type {data_type} is not supported"
            )));
        }
        keys.push(physical(key, input)?);
        types.push(data_type);
    }
    if keys.is_empty() {
        keys.push(physical(&datafusion_expr::lit(0i64), input)?);
        types.push(DataType::Int64);
    }
    Ok((keys, types))
}

/// The top-N of `node`, its expressions made physical.
fn top_n_spec(
    plan: &StreamPlan,
    node: &PlanNode,
    partition: &[Expr],
    order: &[datafusion_expr::SortExpr],
    limit: usize,
) -> Result<TopNSpec> {
    let input = input_schema(plan, node)?;
    let (partition, partition_types) = physical_keys(&partition.iter().collect::<Vec<_>>(), input)?;
    let mut order_exprs = Vec::with_capacity(order.len());
    let mut order_fields = Vec::with_capacity(order.len());
    let mut order_types = Vec::with_capacity(order.len());
    for sort in order {
        let data_type = sort
            .expr
            .get_type(input)
            .map_err(|e| Error::Sql(format!("ORDER BY {sort}: {e}")))?;
        order_exprs.push(physical(&sort.expr, input)?);
        order_types.push(data_type.clone());
        order_fields.push(SortField::new_with_options(
            data_type,
            SortOptions {
                descending: !sort.asc,
                nulls_first: sort.nulls_first,
            },
        ));
    }
    // Flink's deduplication keeping the last row: one row, by a time DESC.
    let newest_first = limit == 1
        && matches!(order, [only] if !only.asc)
        && matches!(&order_types[..], [DataType::Timestamp(_, _)]);
    let converter = |fields: Vec<SortField>| {
        RowConverter::new(fields)
            .map(Arc::new)
            .map_err(|e| Error::Sql(format!("top-N: {e}")))
    };
    Ok(TopNSpec {
        partition,
        partition_rows: converter(partition_types.into_iter().map(SortField::new).collect())?,
        order: order_exprs,
        order_rows: converter(order_fields)?,
        input: Arc::clone(input.inner()),
        schema: Arc::clone(node.schema.inner()),
        limit,
        newest_first,
        update_before: node.update_before,
    })
}

/// The regular join of `node`, its expressions made physical.
fn join_spec(
    plan: &StreamPlan,
    node: &PlanNode,
    on: &[(Expr, Expr)],
    filter: Option<&Expr>,
    ttl: Option<Duration>,
) -> Result<JoinSpec> {
    let side = |i: usize| -> Result<&datafusion_common::DFSchema> {
        node.inputs
            .get(i)
            .map(|&n| plan.nodes[n].schema.as_ref())
            .ok_or_else(|| Error::Internal(format!("join {} lacks an input", node.uid)))
    };
    let (left, right) = (side(0)?, side(1)?);
    let mut keys = [Vec::new(), Vec::new()];
    let mut types = Vec::with_capacity(on.len());
    for (l, r) in on {
        let failed =
            |e: datafusion_common::DataFusionError| Error::Sql(format!("JOIN ON {l} = {r}: {e}"));
        let (left_type, right_type) = (
            l.get_type(left).map_err(failed)?,
            r.get_type(right).map_err(failed)?,
        );
        if left_type != right_type {
            return Err(Error::Sql(format!(
                "JOIN ON {l} = {r}: the two sides are {left_type} and {right_type}; CAST one to the other's type"
            )));
        }
        if !hashable(&left_type) {
            return Err(Error::Sql(format!(
                "JOIN ON {l} = {r}: a key of type {left_type} is not supported"
            )));
        }
        keys[0].push(physical(l, left)?);
        keys[1].push(physical(r, right)?);
        types.push(left_type);
    }
    let filter = filter.map(|f| physical(f, &node.schema)).transpose()?;
    let whole_row = |i: usize, schema: &datafusion_common::DFSchema| -> Result<_> {
        if !plan.nodes[node.inputs[i]].updating {
            return Ok(None);
        }
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        WindowAggregateSpec::converter(&types).map(Some)
    };
    Ok(JoinSpec {
        whole_rows: [whole_row(0, left)?, whole_row(1, right)?],
        keys,
        converter: WindowAggregateSpec::converter(&types)?,
        inputs: [Arc::clone(left.inner()), Arc::clone(right.inner())],
        schema: Arc::clone(node.schema.inner()),
        filter,
        ttl,
        forget: None,
        event_time: None,
        preserved: [false, false],
    })
}

/// The schema of input `side` of `node`.
fn input_dfschema<'p>(
    plan: &'p StreamPlan,
    node: &PlanNode,
    side: usize,
) -> Result<&'p datafusion_common::DFSchema> {
    node.inputs
        .get(side)
        .map(|&n| plan.nodes[n].schema.as_ref())
        .ok_or_else(|| Error::Internal(format!("{} lacks input {side}", node.uid)))
}

/// The updating aggregate of `node`, its expressions made physical.
fn updating_aggregate(
    plan: &StreamPlan,
    node: &PlanNode,
    groups: &[Expr],
    aggregates: &[Expr],
    ttl: Option<Duration>,
) -> Result<UpdatingAggregateSpec> {
    let input = input_schema(plan, node)?;
    let (keys, key_types) = physical_keys(&groups.iter().collect::<Vec<_>>(), input)?;
    let mut calls = aggregates
        .iter()
        .map(|a| AggregateCall::lower(a, input))
        .collect::<Result<Vec<_>>>()?;
    let updating_input = node.inputs.iter().any(|&i| plan.nodes[i].updating);
    let retractions = if updating_input {
        let (retracting, retractions) = calls
            .into_iter()
            .map(|c| c.retracting(input.as_arrow()))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        calls = retracting;
        Some(retractions)
    } else {
        None
    };
    Ok(UpdatingAggregateSpec {
        input: Arc::new(input.as_arrow().clone()),
        retractions,
        ttl,
        converter: WindowAggregateSpec::converter(&key_types)?,
        keys,
        key_types,
        calls,
        schema: Arc::clone(node.schema.inner()),
        visible_keys: groups.len(),
    })
}

/// The source of `table`.
fn source(job: &JobBuilder, table: &Table, node: &PlanNode) -> Result<Stream<Rows>> {
    match table.connector() {
        "nexmark" => {
            let nexmark = NexmarkTable::new(table)?;
            let (config, kind) = (nexmark.config, nexmark.kind);
            let (events, rate) = (nexmark.events, nexmark.rate_limit);
            // Flink SQL's watermark is the newest event time less the delay;
            // the generator's trails it by one millisecond more.
            let max_delay = (nexmark.max_delay_ms - 1).max(0);
            let generated: Stream<Event> = job
                .source(&format!("{}-events", node.uid), move |_| {
                    GeneratorSource::new(NexmarkEvents::of_kind(config, kind), events, rate).with_watermarks(SplitWatermarks {
                        timestamp: Arc::new(Event::date_time),
                        max_delay,
                        interval: Duration::from_millis(200),
                    })
                })
                .uid(&node.uid);
            let uid = format!("{}-rows", node.uid);
            Ok(generated.transform(&uid, move |_| nexmark.to_rows()).uid(&uid))
        }
        "kafka" => {
            let kafka = KafkaTable::new(table)?;
            let source = kafka.clone();
            let records = job
                .source(&format!("{}-records", node.uid), move |_| source.source())
                .uid(&node.uid);
            let decoded = format!("{}-decode", node.uid);
            Ok(records.transform(&decoded, move |_| kafka.to_rows()).uid(&decoded))
        }
        "filesystem" => {
            let files = input_files(table)?;
            let lines: Stream<String> = job
                .source(&format!("{}-lines", node.uid), move |_| TextFileSource::new(files.clone()))
                .uid(&node.uid);
            let decoded = format!("{}-decode", node.uid);
            let spec = JsonRowsSpec::new(table, "filesystem")?;
            let rows = lines
                .transform(&decoded, move |_| JsonRows::new(spec.clone()))
                .uid(&decoded);
            Ok(with_watermarks(rows, table, node)?)
        }
        other => Err(Error::Sql(format!(
            "table `{}` (connector '{other}') cannot be read by a SQL job: kafka, filesystem and nexmark tables can",
            table.name
        ))),
    }
}

/// The files of a `filesystem` table: its path's, if a directory (sorted,
/// hidden ones left out), else the path itself.
fn input_files(table: &Table) -> Result<Vec<std::path::PathBuf>> {
    let path = table.option("path").unwrap_or_default();
    let path = std::path::PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
    if !path.is_dir() {
        return match path.exists() {
            true => Ok(vec![path]),
            false => Err(Error::Sql(format!(
                "table `{}`: 'path' {} does not exist",
                table.name,
                path.display()
            ))),
        };
    }
    let entries = std::fs::read_dir(&path).map_err(|e| Error::io("listing", &path, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &path, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with(['.', '_']);
        if !hidden && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// `rows` with the watermarks of `table`'s `WATERMARK FOR`, if it has one:
/// the largest event time seen less the delay.
fn with_watermarks(rows: Stream<Rows>, table: &Table, node: &PlanNode) -> Result<Stream<Rows>> {
    let Some(watermark) = &table.watermark else {
        return Ok(rows);
    };
    let schema = table_schema(table);
    let column = schema.index_of(&watermark.column).map_err(|_| {
        Error::Sql(format!(
            "table `{}`: no column `{}`",
            table.name, watermark.column
        ))
    })?;
    // Flink SQL's watermark is the newest event time less the delay; the
    // assigner's trails it by one millisecond more.
    let strategy = WatermarkStrategy::bounded_out_of_orderness(
        Duration::from_millis(watermark.delay_ms.saturating_sub(1)),
        move |rows: &Rows| newest(rows, column),
    )
    .with_interval(Duration::from_millis(200));
    let uid = format!("{}-watermarks", node.uid);
    Ok(rows.assign_watermarks(&uid, strategy).uid(&uid))
}

/// The newest event time in column `column` of `rows`, ms.
fn newest(rows: &Rows, column: usize) -> i64 {
    millis(rows.batch.column(column))
        .ok()
        .and_then(|times| datafusion_common::arrow::compute::max(&times))
        .unwrap_or(i64::MIN)
}

/// Ends `stream` in `table`.
fn sink(stream: Stream<Rows>, table: &Table, node: &PlanNode) -> Result<()> {
    let uid = &node.uid;
    let encoded = format!("{uid}-encode");
    match table.connector() {
        "blackhole" => {
            stream.sink(uid, |_| DiscardSink::new()).uid(uid);
        }
        "print" => {
            let prefix = table.option("print-identifier").map(|p| format!("{p}> ")).unwrap_or_default();
            stream
                .try_map(&encoded, move |rows: Rows| lines(&rows, |b, out| print_lines(b, &prefix, out)))
                .uid(&encoded)
                .sink(uid, |_| StdoutSink::new(|line: &String, out| out.extend_from_slice(line.as_bytes())))
                .uid(uid);
        }
        "filesystem" => {
            let path = table.option("path").unwrap_or_default();
            let dir = path.strip_prefix("file://").unwrap_or(path).to_string();
            stream
                .try_map(&encoded, |rows: Rows| lines(&rows, json_lines))
                .uid(&encoded)
                .sink(uid, move |_| FileSink::new(dir.clone(), |line: &String, out| out.extend_from_slice(line.as_bytes())))
                .uid(uid);
        }
        "kafka" if table.format() == Some("avro") => {
            let (config, topic, guarantee) = kafka_output(table)?;
            let spec = AvroRecordsSpec::new(table)?;
            stream
                .transform(&encoded, move |_| AvroRecords::new(spec.clone()))
                .uid(&encoded)
                .sink(uid, move |_| {
                    KafkaSink::new(config.clone(), &topic, |row: &Vec<u8>, out| out.extend_from_slice(row))
                        .guarantee(guarantee)
                })
                .uid(uid);
        }
        "kafka" => {
            let (config, topic, guarantee) = kafka_output(table)?;
            stream
                .transform(&encoded, |_| JsonRecords)
                .uid(&encoded)
                .sink(uid, move |_| {
                    KafkaSink::new(config.clone(), &topic, |row: &String, out| out.extend_from_slice(row.as_bytes()))
                        .guarantee(guarantee)
                })
                .uid(uid);
        }
        "upsert-kafka" => {
            let (config, topic, guarantee) = kafka_output(table)?;
            let spec = UpsertSpec::new(table)?;
            stream
                .transform(&encoded, move |_| UpsertRecords::new(&spec))
                .uid(&encoded)
                .sink(uid, move |_| {
                    KafkaSink::new(config.clone(), &topic, |(_, value): &Upsert, out| {
                        out.extend_from_slice(value.as_deref().unwrap_or_default())
                    })
                    .key(|(key, _): &Upsert, out| out.extend_from_slice(key))
                    .tombstones(|(_, value): &Upsert| value.is_none())
                    .guarantee(guarantee)
                })
                .uid(uid);
        }
        other => {
            return Err(Error::Sql(format!(
                "table `{}` (connector '{other}') cannot be written by a SQL job yet: print, blackhole, filesystem, kafka and upsert-kafka can",
                table.name
            )))
        }
    }
    Ok(())
}

/// The brokers, topic and guarantee of a Kafka table.
fn kafka_output(table: &Table) -> Result<(KafkaConfig, String, Guarantee)> {
    let guarantee = match table.option("sink.delivery-guarantee") {
        None | Some("exactly-once") => Guarantee::ExactlyOnce,
        Some("at-least-once") => Guarantee::AtLeastOnce,
        Some(_) => Guarantee::None,
    };
    let topic = table.option("topic").unwrap_or_default().to_string();
    Ok((kafka_config(table), topic, guarantee))
}
