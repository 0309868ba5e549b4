//! What DataFusion's SQL planner looks names up in: the job's tables (from
//! the catalog and the script's own `CREATE TABLE`s) and DataFusion's
//! library of scalar, aggregate and window functions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_err, Result, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use weir_catalog::Table;

use crate::sql::arrow_types::table_schema;
use crate::sql::window_tvf::WindowTvfPlanner;

/// The tables a job can name, by name.
pub type Tables = BTreeMap<String, Table>;

/// The planner's view of the job's tables and functions.
pub struct Context {
    tables: Arc<Tables>,
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    windows: HashMap<String, Arc<WindowUDF>>,
    relation_planners: Vec<Arc<dyn RelationPlanner>>,
    /// How function calls plan: `COUNT(*)`, `a.b` field access, `POSITION`, ...
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
}

impl Context {
    /// A context over `tables` with DataFusion's functions.
    pub fn new(tables: Tables) -> Self {
        let tables = Arc::new(tables);
        let scalars = by_name(
            datafusion_functions::all_default_functions()
                .into_iter()
                .chain(datafusion_functions_nested::all_default_nested_functions())
                // Flink's, last: its DATE_FORMAT replaces DataFusion's alias.
                .chain(crate::sql::flink_functions::all()),
            |f| (f.name(), f.aliases()),
        );
        let aggregates = by_name(
            datafusion_functions_aggregate::all_default_aggregate_functions()
                .into_iter()
                // Flink's AVG, last: it replaces DataFusion's.
                .chain(std::iter::once(crate::sql::flink_avg::FlinkAvg::udaf())),
            |f| (f.name(), f.aliases()),
        );
        let windows = by_name(
            datafusion_functions_window::all_default_window_functions(),
            |f| (f.name(), f.aliases()),
        );
        let planner = WindowTvfPlanner {
            tables: Arc::clone(&tables),
        };
        Context {
            tables,
            scalars,
            aggregates,
            windows,
            relation_planners: vec![Arc::new(planner)],
            expr_planners: vec![
                Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
                Arc::new(datafusion_functions_window::planner::WindowFunctionPlanner),
                Arc::new(datafusion_functions_nested::planner::NestedFunctionPlanner),
                Arc::new(datafusion_functions_nested::planner::FieldAccessPlanner),
                Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
                Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
                Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
            ],
            options: flink_options(),
        }
    }

    /// The table `name`, if the job has it.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }
}

/// DataFusion's options set as Flink SQL behaves: a literal with a decimal
/// point (`0.908`) is an exact `DECIMAL`, not a `DOUBLE`.
fn flink_options() -> ConfigOptions {
    let mut options = ConfigOptions::default();
    options.sql_parser.parse_float_as_decimal = true;
    options
}

/// `functions` by their names and aliases, as SQL looks them up.
fn by_name<F: ?Sized>(
    functions: impl IntoIterator<Item = Arc<F>>,
    names: impl Fn(&F) -> (&str, &[String]),
) -> HashMap<String, Arc<F>> {
    let mut map = HashMap::new();
    for function in functions {
        let (name, aliases) = names(&function);
        for name in std::iter::once(name).chain(aliases.iter().map(String::as_str)) {
            map.insert(name.to_string(), Arc::clone(&function));
        }
    }
    map
}

impl ContextProvider for Context {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        let Some(table) = self.tables.get(name.table()) else {
            let known: Vec<_> = self.tables.keys().map(String::as_str).collect();
            return plan_err!(
                "table `{name}` is neither in the catalog nor created in the script (tables: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        Ok(Arc::new(LogicalTableSource::new(table_schema(table))))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.expr_planners
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        &self.relation_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalars.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.windows.get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalars.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.windows.keys().cloned().collect()
    }
}
