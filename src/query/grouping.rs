//! GROUP BY over the archive's columns with dense group ids: a physical optimizer rule that
//! replaces DataFusion's hash aggregation where the first pass over the rows is the cost.
//!
//! DataFusion 55 finds each row's group by hashing the row's key and probing a table, for every
//! row. The archive's files are sorted by (credential, time), so a key column mostly repeats
//! the row before it: in a demo hour, `zone` changes on 0.2% of the rows, `credential` on 0.5%
//! and `network` on 13%. [`DenseAggregateExec`] gives each column's values dense ids, compares
//! a row with the one before it first and hashes only when the value changed; several columns'
//! ids are combined pairwise into dense ids the same way; string-view keys without NULLs are
//! compared with the row before all at once, and only a row where one changes is looked up.
//! When every aggregate is `count(*)`, rows are counted per group directly (for one dictionary
//! key, by runs of equal keys, with no id per row). Otherwise the aggregates are
//! DataFusion's own [`GroupsAccumulator`]s, fed the group ids as `AggregateExec` feeds them, so
//! every aggregate computes what it computes there, and the output batches (partial states or
//! final values) have the replaced node's schema.
//!
//! [`DenseGroupBy`] replaces an `AggregateExec` only where that is plainly the same
//! computation: it reads raw rows (`Partial`, `Single` or `SinglePartitioned`), in no useful
//! order (`Linear`), with one grouping set, no limit and no dynamic filter; every aggregate has
//! a groups accumulator and no `ORDER BY` of its own; and every key is a string, a dictionary
//! of strings (the archive's labels: each batch's few dictionary values are looked up, not its
//! rows), or an integer, date, time or timestamp. Anything else keeps DataFusion's plan. The aggregation holds all
//! groups in memory, as DataFusion's does without a memory limit; its memory is reserved from
//! the session's pool, so a limit, if one is set, is an error here rather than a spill.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{
    make_array, Array, ArrayData, ArrayRef, AsArray, BooleanArray, GenericStringArray, Int64Array,
    LargeStringArray, OffsetSizeTrait, RecordBatch, StringArray, StringViewArray,
};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::{ConfigExtension, ConfigOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{internal_err, Result};
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{
    aggregate_expressions, evaluate_group_by, evaluate_many, AggregateExec, AggregateMode,
};
use datafusion::physical_plan::execution_plan::InputOrderMode;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::prelude::SessionConfig;
use futures::{StreamExt as _, TryStreamExt as _};

type FastMap<K> = HashMap<K, u32, foldhash::fast::RandomState>;

datafusion::common::extensions_options! {
    /// credwatch's own session options, set in SQL as `SET credwatch.<name> = <value>`.
    pub struct QueryOptions {
        /// Aggregate with dense group ids ([`DenseGroupBy`]); `false` keeps DataFusion's own
        /// hash aggregation, to compare the two.
        pub dense_group_by: bool, default = true
    }
}

impl ConfigExtension for QueryOptions {
    const PREFIX: &'static str = "credwatch";
}

/// A session with DataFusion's defaults and [`DenseGroupBy`] after its own rules, and
/// [`QueryOptions`] registered (with its defaults, unless `config` brings them).
pub fn session(mut config: SessionConfig) -> SessionContext {
    if config.options().extensions.get::<QueryOptions>().is_none() {
        config = config.with_option_extension(QueryOptions::default());
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(DenseGroupBy))
        .build();
    SessionContext::new_with_state(state)
}

/// The physical optimizer rule: each `AggregateExec` that [`DenseAggregateExec::fits`] becomes
/// a [`DenseAggregateExec`], unless `credwatch.dense_group_by` is off.
#[derive(Debug, Default)]
pub struct DenseGroupBy;

impl PhysicalOptimizerRule for DenseGroupBy {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let options = config.extensions.get::<QueryOptions>();
        if options.is_some_and(|o| !o.dense_group_by) {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(aggregate) = as_aggregate(Arc::clone(&node)) else {
                return Ok(Transformed::no(node));
            };
            if !DenseAggregateExec::fits(&aggregate)? {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(DenseAggregateExec::new(
                aggregate,
            ))))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "dense_group_by"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// An `AggregateExec` executed with dense group ids. It keeps the node it replaces for its
/// expressions, schema and plan properties, and shows as that node under its own name in
/// `EXPLAIN`.
#[derive(Debug)]
pub struct DenseAggregateExec {
    aggregate: Arc<AggregateExec>,
    metrics: ExecutionPlanMetricsSet,
}

impl DenseAggregateExec {
    fn new(aggregate: Arc<AggregateExec>) -> DenseAggregateExec {
        DenseAggregateExec {
            aggregate,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// Whether `aggregate` computes over raw rows exactly what this node computes.
    pub fn fits(aggregate: &AggregateExec) -> Result<bool> {
        let group_by = aggregate.group_expr();
        let raw = matches!(
            aggregate.mode(),
            AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
        );
        if !raw
            || !group_by.is_single()
            || group_by.is_empty()
            || aggregate.limit_options().is_some()
            || !aggregate.dynamic_expressions_produced().is_empty()
            || *aggregate.input_order_mode() != InputOrderMode::Linear
        {
            return Ok(false);
        }
        let accumulable = |a: &Arc<AggregateFunctionExpr>| {
            a.groups_accumulator_supported() && a.order_bys().is_empty() && !a.is_distinct()
        };
        if !aggregate.aggr_expr().iter().all(accumulable) {
            return Ok(false);
        }
        let keys = group_by.group_schema(&aggregate.input_schema())?;
        Ok(keys.fields().iter().all(|f| Key::supports(f.data_type())))
    }
}

impl DisplayAs for DenseAggregateExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match format {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                let line = displayable(self.aggregate.as_ref()).one_line().to_string();
                let details = line
                    .trim_end()
                    .strip_prefix("AggregateExec")
                    .unwrap_or(&line);
                write!(f, "DenseAggregateExec{details}")
            }
            DisplayFormatType::TreeRender => self.aggregate.fmt_as(format, f),
        }
    }
}

impl ExecutionPlan for DenseAggregateExec {
    fn name(&self) -> &str {
        "DenseAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(
            &Arc<dyn PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    #[allow(deprecated)] // the trait still requires it; replace_children's default calls it
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let replaced = Arc::clone(&self.aggregate).with_new_children(children)?;
        let Some(aggregate) = as_aggregate(replaced) else {
            return internal_err!("AggregateExec::with_new_children returned another node");
        };
        Ok(Arc::new(DenseAggregateExec::new(aggregate)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self
            .aggregate
            .input()
            .execute(partition, Arc::clone(&context))?;
        let reservation = MemoryConsumer::new(format!("DenseAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let mut aggregation = Aggregation::new(
            Arc::clone(&self.aggregate),
            reservation,
            BaselineMetrics::new(&self.metrics, partition),
        )?;
        let batch_size = context.session_config().batch_size();
        let schema = self.aggregate.schema();
        let aggregation_schema = Arc::clone(&schema);
        let aggregate = Arc::clone(&self.aggregate);
        let handed_over = MetricBuilder::new(&self.metrics).counter("handed_over", partition);
        let batches = futures::stream::once(async move {
            let mut input = input;
            // The probe: the first rows, kept until the number of groups says which way.
            let mut probe = Vec::new();
            let mut rows = 0;
            while rows < PROBE_ROWS {
                let Some(batch) = input.next().await.transpose()? else {
                    break;
                };
                aggregation.add(&batch)?;
                rows += batch.num_rows();
                probe.push(batch);
            }
            if rows >= PROBE_ROWS && aggregation.groups.len() > rows / MIN_ROWS_PER_GROUP {
                handed_over.add(1);
                drop(aggregation);
                return hand_over(aggregate, probe, input, context);
            }
            drop(probe);
            while let Some(batch) = input.next().await {
                aggregation.add(&batch?)?;
            }
            let batches = aggregation.finish(batch_size)?;
            let stream = futures::stream::iter(batches.into_iter().map(Ok));
            Ok(
                Box::pin(RecordBatchStreamAdapter::new(aggregation_schema, stream))
                    as SendableRecordBatchStream,
            )
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `plan` as the `AggregateExec` it is, if it is one.
fn as_aggregate(plan: Arc<dyn ExecutionPlan>) -> Option<Arc<AggregateExec>> {
    let any: Arc<dyn std::any::Any + Send + Sync> = plan;
    any.downcast().ok()
}

/// Rows read before deciding whether dense ids pay: enough for the groups of a sorted file's
/// first credentials to show.
const PROBE_ROWS: usize = 65_536;

/// Dense ids win when keys repeat. With fewer rows per group than this in the probe (a
/// near-unique key such as `event_id`, or `source_ip` with `credential`), DataFusion's hash
/// aggregation, which stores keys contiguously and skips partial aggregation that does not
/// reduce, is faster: on 3M events, `GROUP BY event_id` took 2.0 s here and 0.6 s there.
const MIN_ROWS_PER_GROUP: usize = 32;

/// Runs DataFusion's own `aggregate` over the probe's batches and the rest of `input`.
fn hand_over(
    aggregate: Arc<AggregateExec>,
    probe: Vec<RecordBatch>,
    input: SendableRecordBatchStream,
    context: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let schema = input.schema();
    let rows = futures::stream::iter(probe.into_iter().map(Ok)).chain(input);
    let stream: SendableRecordBatchStream =
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), rows));
    let leaf = StreamingTableExec::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Handover {
            schema,
            stream: Mutex::new(Some(stream)),
        })],
        None,
        Vec::new(),
        false,
        None,
    )?;
    #[allow(deprecated)] // replace_children's options are not needed for a fresh plan
    let plan = aggregate.with_new_children(vec![Arc::new(leaf)])?;
    plan.execute(0, context)
}

/// A stream already started, as a partition for [`StreamingTableExec`]; it can run once.
struct Handover {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Handover")
    }
}

impl PartitionStream for Handover {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        taken.unwrap_or_else(|| {
            let error = futures::stream::once(async {
                internal_err!("DenseAggregateExec handed its input over twice")
            });
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                error,
            ))
        })
    }
}

/// One partition's aggregation: the groups seen so far and an accumulator per aggregate.
struct Aggregation {
    aggregate: Arc<AggregateExec>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    groups: Groups,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// There are aggregates and every one is `count(*)`: rows are counted into `tally` by
    /// group, and the accumulators are not fed.
    counting: bool,
    /// Rows per group id, when `counting`.
    tally: Vec<i64>,
    group_ids: Vec<usize>,
    reservation: MemoryReservation,
    metrics: BaselineMetrics,
}

impl Aggregation {
    fn new(
        aggregate: Arc<AggregateExec>,
        reservation: MemoryReservation,
        metrics: BaselineMetrics,
    ) -> Result<Aggregation> {
        let keys = aggregate
            .group_expr()
            .group_schema(&aggregate.input_schema())?;
        let keys = keys
            .fields()
            .iter()
            .map(|f| Key::new(f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let mut arguments = aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 0)?;
        let mut accumulators = Vec::with_capacity(arguments.len());
        let mut row_counts = 0;
        for (i, expr) in aggregate.aggr_expr().iter().enumerate() {
            let filter = aggregate.filter_expr().get(i).and_then(Option::as_ref);
            if RowCount::counts(expr, filter)? {
                // Its argument is a constant: nothing to evaluate per batch.
                arguments[i].clear();
                accumulators.push(Box::new(RowCount::default()) as Box<dyn GroupsAccumulator>);
                row_counts += 1;
            } else {
                accumulators.push(expr.create_groups_accumulator()?);
            }
        }
        // (With no aggregate at all, as in the inner step of `count(DISTINCT x)`, there is
        // nothing to count: the groups are the result.)
        let counting = row_counts > 0 && row_counts == accumulators.len();
        Ok(Aggregation {
            arguments,
            aggregate,
            groups: Groups::new(keys),
            accumulators,
            counting,
            tally: Vec::new(),
            group_ids: Vec::new(),
            reservation,
            metrics,
        })
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let _timer = self.metrics.elapsed_compute().timer();
        let mut sets = evaluate_group_by(self.aggregate.group_expr(), batch)?;
        let Some(keys) = sets.pop().filter(|_| sets.is_empty()) else {
            return internal_err!("DenseAggregateExec runs one grouping set");
        };
        let arguments = evaluate_many(&self.arguments, batch)?;
        let filters = self
            .aggregate
            .filter_expr()
            .iter()
            .map(|filter| {
                filter
                    .as_ref()
                    .map(|f| f.evaluate(batch)?.into_array(batch.num_rows()))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        if self.counting {
            // One dictionary key (the archive's labels): counted by runs of equal keys, with
            // no id per row. Any other key: ids per row, then counted.
            if !self.groups.tally(&keys, &mut self.tally)? {
                self.groups.assign(&keys, &mut self.group_ids)?;
                tally_runs(&self.group_ids, |id| id, &mut self.tally);
            }
        } else if self.accumulators.is_empty() {
            // No aggregate (the inner step of `count(DISTINCT x)`): the groups are the result.
            self.groups.register(&keys, &mut self.group_ids)?;
        } else {
            self.groups.assign(&keys, &mut self.group_ids)?;
            let total = self.groups.len();
            for ((accumulator, values), filter) in
                self.accumulators.iter_mut().zip(&arguments).zip(&filters)
            {
                let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
                accumulator.update_batch(values, &self.group_ids, filter, total)?;
            }
        }
        let size = self.groups.size()
            + self.group_ids.capacity() * size_of::<usize>()
            + self.tally.capacity() * size_of::<i64>()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        self.reservation.try_resize(size)
    }

    fn finish(mut self, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let _timer = self.metrics.elapsed_compute().timer();
        if self.groups.is_empty() {
            return Ok(Vec::new());
        }
        let schema: SchemaRef = self.aggregate.schema();
        let mut columns = self.groups.emit(&schema)?;
        let partial = matches!(self.aggregate.mode(), AggregateMode::Partial);
        if self.counting {
            // `count`'s state and its result are the same one Int64 column.
            let mut tally = std::mem::take(&mut self.tally);
            tally.resize(self.groups.len(), 0);
            let counts: ArrayRef = Arc::new(Int64Array::from(tally));
            columns.extend(std::iter::repeat_n(counts, self.accumulators.len()));
        } else {
            for accumulator in &mut self.accumulators {
                if partial {
                    columns.extend(accumulator.state(EmitTo::All)?);
                } else {
                    columns.push(accumulator.evaluate(EmitTo::All)?);
                }
            }
        }
        let whole = RecordBatch::try_new(schema, columns)?;
        let size = batch_size.max(1);
        let batches: Vec<RecordBatch> = (0..whole.num_rows())
            .step_by(size)
            .map(|offset| whole.slice(offset, size.min(whole.num_rows() - offset)))
            .collect();
        self.metrics.record_output(whole.num_rows());
        self.reservation.free();
        Ok(batches)
    }
}

/// `count(*)` (which DataFusion plans as `count(1)`): the number of rows of each group, with
/// the state and result `count` has (one non-null Int64).
#[derive(Default)]
struct RowCount {
    counts: Vec<i64>,
}

impl RowCount {
    /// Whether `expr` counts every row: `count` of a non-null constant, without DISTINCT or a
    /// FILTER.
    fn counts(
        expr: &AggregateFunctionExpr,
        filter: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<bool> {
        let arguments = expr.expressions();
        let constant = match arguments.as_slice() {
            [argument] => argument
                .downcast_ref::<Literal>()
                .is_some_and(|l| !l.value().is_null()),
            _ => false,
        };
        let state = expr.state_fields()?;
        Ok(expr.fun().name() == "count"
            && constant
            && !expr.is_distinct()
            && filter.is_none()
            && state.len() == 1
            && *state[0].data_type() == DataType::Int64
            && *expr.field().data_type() == DataType::Int64)
    }
}

impl GroupsAccumulator for RowCount {
    fn update_batch(
        &mut self,
        _values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if opt_filter.is_some() {
            return internal_err!("count(*) was given a filter");
        }
        self.counts.resize(total_num_groups, 0);
        tally_runs(group_indices, |group| group, &mut self.counts);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from(
            emit_to.take_needed(&mut self.counts),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        _values: &[ArrayRef],
        _group_indices: &[usize],
        _total_num_groups: usize,
    ) -> Result<()> {
        internal_err!("DenseAggregateExec reads raw rows; it never merges states")
    }

    fn convert_to_state(
        &self,
        _values: &[ArrayRef],
        _opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        internal_err!("DenseAggregateExec always aggregates; it never passes rows through")
    }

    fn size(&self) -> usize {
        self.counts.capacity() * size_of::<i64>()
    }
}

/// The groups of one aggregation: each key column's values as dense ids, and for two or more
/// columns a chain of pairings (ids of columns 0 and 1, then that pair's id and column 2, ...)
/// whose last link numbers the groups.
struct Groups {
    keys: Vec<Key>,
    pairings: Vec<Pairing>,
    /// Each key column's ids for the current batch; the first becomes the group ids.
    column_ids: Vec<Vec<usize>>,
}

impl Groups {
    fn new(keys: Vec<Key>) -> Groups {
        let pairings = (1..keys.len()).map(|_| Pairing::default()).collect();
        let column_ids = keys.iter().map(|_| Vec::new()).collect();
        Groups {
            keys,
            pairings,
            column_ids,
        }
    }

    fn len(&self) -> usize {
        match self.pairings.last() {
            Some(last) => last.pairs.len(),
            None => self.keys[0].len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn size(&self) -> usize {
        self.keys.iter().map(Key::size).sum::<usize>()
            + self.pairings.iter().map(Pairing::size).sum::<usize>()
            + self
                .column_ids
                .iter()
                .map(|ids| ids.capacity() * size_of::<usize>())
                .sum::<usize>()
    }

    /// Sets `group_ids` to the group of each row of `columns`, adding new groups.
    fn assign(&mut self, columns: &[ArrayRef], group_ids: &mut Vec<usize>) -> Result<()> {
        if columns.len() != self.keys.len() {
            return internal_err!("{} key columns for {} keys", columns.len(), self.keys.len());
        }
        if columns.len() >= 2 && self.assign_view_rows(columns, Some(group_ids)) {
            return Ok(());
        }
        for ((key, column), ids) in self.keys.iter_mut().zip(columns).zip(&mut self.column_ids) {
            ids.clear();
            key.assign(column, ids)?;
        }
        let (first, rest) = self.column_ids.split_at_mut(1);
        let combined = &mut first[0];
        for (pairing, right) in self.pairings.iter_mut().zip(rest.iter()) {
            pairing.combine(combined, right);
        }
        std::mem::swap(group_ids, combined);
        Ok(())
    }

    /// Group ids for two or more string-view keys (the archive's `credential` and `network`,
    /// say): a row whose views all equal the row before's (and is NULL where it was) is in that
    /// row's group, and only the rows where a key changes look their values up and pair their
    /// ids, with no id column per key. With `group_ids` None only the groups are added.
    /// Returns false, having done nothing, for other columns.
    fn assign_view_rows(
        &mut self,
        columns: &[ArrayRef],
        group_ids: Option<&mut Vec<usize>>,
    ) -> bool {
        let arrays: Option<Vec<&StringViewArray>> =
            columns.iter().map(|c| c.as_string_view_opt()).collect();
        let Some(arrays) = arrays else {
            return false;
        };
        let Groups { keys, pairings, .. } = self;
        let mut strings = Vec::with_capacity(keys.len());
        for key in keys.iter_mut() {
            match key {
                Key::Strings { values, views, .. } => {
                    views.next_array();
                    strings.push((values, views));
                }
                Key::Fixed { .. } => return false,
            }
        }
        let nulls: Vec<Option<&NullBuffer>> = arrays
            .iter()
            .map(|a| a.nulls().filter(|n| n.null_count() > 0))
            .collect();
        let valid = |column: usize, row: usize| nulls[column].is_none_or(|n| n.is_valid(row));
        let rows = columns[0].len();
        let mut group_ids = group_ids;
        if let Some(group_ids) = group_ids.as_deref_mut() {
            group_ids.clear();
            group_ids.reserve(rows);
        }
        if let ([first, second], [(values_a, cache_a), (values_b, cache_b)], [pairing]) =
            (&arrays[..], &mut strings[..], &mut pairings[..])
        {
            let a = (*first, nulls[0], &mut **values_a, &mut **cache_a);
            let b = (*second, nulls[1], &mut **values_b, &mut **cache_b);
            two_view_rows(a, b, pairing, group_ids);
            return true;
        }
        // Unlike every first view, so the first row is looked up.
        let mut last: Vec<(u128, bool)> = arrays
            .iter()
            .map(|a| (a.views().first().map_or(0, |v| !v), true))
            .collect();
        let mut group = 0;
        let mut regroup = |row: usize, last: &mut [(u128, bool)]| {
            let mut group = 0;
            for (column, (array, (values, views))) in
                arrays.iter().zip(strings.iter_mut()).enumerate()
            {
                let valid = valid(column, row);
                last[column] = (array.views()[row], valid);
                let id = key_id(values, views, array, row, valid);
                group = match column {
                    0 => id,
                    _ => pairings[column - 1].pair(group, id),
                };
            }
            group
        };
        for row in 0..rows {
            let same = arrays
                .iter()
                .zip(&last)
                .enumerate()
                .all(|(column, (array, &last))| (array.views()[row], valid(column, row)) == last);
            if !same {
                group = regroup(row, &mut last);
            }
            if let Some(group_ids) = group_ids.as_deref_mut() {
                group_ids.push(group);
            }
        }
        true
    }

    /// Adds the groups of the rows of `columns` without keeping each row's group (for an
    /// aggregation with no aggregate, such as the inner step of `count(DISTINCT x)`); `scratch`
    /// holds ids where the columns need them.
    fn register(&mut self, columns: &[ArrayRef], scratch: &mut Vec<usize>) -> Result<()> {
        if columns.len() >= 2
            && columns.len() == self.keys.len()
            && self.assign_view_rows(columns, None)
        {
            return Ok(());
        }
        self.assign(columns, scratch)
    }

    /// Adds the rows of `columns` to `tally` by group, if they are one dictionary column
    /// without NULL keys; returns whether it did (otherwise nothing was counted).
    fn tally(&mut self, columns: &[ArrayRef], tally: &mut Vec<i64>) -> Result<bool> {
        match (self.keys.as_mut_slice(), columns) {
            (
                [Key::Strings {
                    values, dictionary, ..
                }],
                [column],
            ) if matches!(column.data_type(), DataType::Dictionary(..)) => {
                tally_dictionary(values, dictionary, column, tally)
            }
            _ => Ok(false),
        }
    }

    /// The key columns of every group, in group order, typed as `schema`'s first fields.
    fn emit(&self, schema: &SchemaRef) -> Result<Vec<ArrayRef>> {
        let groups = self.len();
        let mut ids: Vec<Vec<u32>> = vec![Vec::with_capacity(groups); self.keys.len()];
        for group in 0..groups as u32 {
            let mut id = group;
            for (column, pairing) in self.pairings.iter().enumerate().rev() {
                let (left, right) = pairing.pairs[id as usize];
                ids[column + 1].push(right);
                id = left;
            }
            ids[0].push(id);
        }
        self.keys
            .iter()
            .zip(&ids)
            .zip(schema.fields())
            .map(|((key, ids), field)| key.emit(ids, field.data_type()))
            .collect()
    }
}

/// One string-view key column for [`two_view_rows`]: the array, its NULLs if it has any, and
/// its values and view cache.
type ViewKey<'a> = (
    &'a StringViewArray,
    Option<&'a NullBuffer>,
    &'a mut Values<Box<str>>,
    &'a mut ViewCache,
);

/// [`Groups::assign_view_rows`] for two keys, the common case (`credential` and `network`).
/// The stretches of rows where neither key is NULL compare views only; where the first view
/// is the row before's, only the second is looked up. Rows with a NULL key (few in the
/// archive) are looked up one by one. With `group_ids` None only the groups are added.
fn two_view_rows(
    (first, first_nulls, values_a, cache_a): ViewKey,
    (second, second_nulls, values_b, cache_b): ViewKey,
    pairing: &mut Pairing,
    mut group_ids: Option<&mut Vec<usize>>,
) {
    let rows = first.len();
    let (views_a, views_b) = (first.views(), second.views());
    let valid: Vec<(usize, usize)> = match NullBuffer::union(first_nulls, second_nulls) {
        Some(both) => both.valid_slices().collect(),
        None => vec![(0, rows)],
    };
    let mut next = 0;
    for (start, end) in valid.into_iter().chain([(rows, rows)]) {
        for row in next..start {
            let valid = |nulls: Option<&NullBuffer>| nulls.is_none_or(|n| n.is_valid(row));
            let id_a = key_id(values_a, cache_a, first, row, valid(first_nulls));
            let id_b = key_id(values_b, cache_b, second, row, valid(second_nulls));
            let group = pairing.pair(id_a, id_b);
            if let Some(group_ids) = group_ids.as_deref_mut() {
                group_ids.push(group);
            }
        }
        next = end;
        let Some(&first_a) = views_a.get(start) else {
            continue;
        };
        // Unlike the stretch's first view, so its first row is looked up.
        let (mut last_a, mut last_b) = (!first_a, 0);
        let (mut id_a, mut group) = (0, 0);
        let mut step = |row: usize, a: u128, b: u128| {
            if a != last_a {
                id_a = view_id(values_a, cache_a, first, row, a);
                last_a = a;
            } else if b == last_b {
                return group;
            }
            last_b = b;
            group = pairing.pair(id_a, view_id(values_b, cache_b, second, row, b));
            group
        };
        let stretch = (start..).zip(views_a[start..end].iter().zip(&views_b[start..end]));
        match group_ids.as_deref_mut() {
            Some(group_ids) => group_ids.extend(stretch.map(|(row, (&a, &b))| step(row, a, b))),
            // Only the groups are wanted: a row like the one before costs two compares.
            None => stretch.for_each(|(row, (&a, &b))| {
                step(row, a, b);
            }),
        }
    }
}

/// Dense ids for pairs of ids.
#[derive(Default)]
struct Pairing {
    ids: FastMap<u64>,
    pairs: Vec<(u32, u32)>,
}

impl Pairing {
    fn size(&self) -> usize {
        self.ids.capacity() * (size_of::<u64>() + size_of::<u32>() + 1)
            + self.pairs.capacity() * size_of::<(u32, u32)>()
    }

    /// Replaces each `left[i]` by the id of the pair (`left[i]`, `right[i]`).
    fn combine(&mut self, left: &mut [usize], right: &[usize]) {
        let mut previous: Option<(usize, usize, usize)> = None;
        for (l, &r) in left.iter_mut().zip(right) {
            let id = match previous {
                Some((pl, pr, id)) if pl == *l && pr == r => id,
                _ => self.pair(*l, r),
            };
            previous = Some((*l, r, id));
            *l = id;
        }
    }

    /// The id of the pair (`left`, `right`), a new one the first time.
    fn pair(&mut self, left: usize, right: usize) -> usize {
        // Both are u32 ids widened for the accumulators.
        let pair = (left as u32, right as u32);
        let next = self.pairs.len() as u32;
        let id = *self
            .ids
            .entry(u64::from(pair.0) << 32 | u64::from(pair.1))
            .or_insert(next);
        if id == next {
            self.pairs.push(pair);
        }
        id as usize
    }
}

/// One key column's values and their dense ids, in order of first appearance. A NULL key is a
/// group of its own, as in SQL's GROUP BY.
enum Key {
    Strings {
        values: Values<Box<str>>,
        views: ViewCache,
        /// For a dictionary column: the ids of the last batch's dictionary values.
        dictionary: DictionaryIds,
    },
    /// Integers, dates, times and timestamps, by their little-endian bytes (`width` of them).
    Fixed { width: usize, values: Values<u64> },
}

struct Values<T> {
    ids: FastMap<T>,
    /// By id; `None` is the NULL key.
    values: Vec<Option<T>>,
    null: Option<u32>,
    /// Bytes the values hold on the heap, both copies (the map's key and `values`).
    heap: usize,
}

impl<T: std::hash::Hash + Eq + Clone> Values<T> {
    fn new() -> Values<T> {
        Values {
            ids: FastMap::default(),
            values: Vec::new(),
            null: None,
            heap: 0,
        }
    }

    /// The id of `value`, a new one the first time; `own` makes a stored copy, which holds
    /// `heap` bytes on the heap.
    fn id<Q>(&mut self, value: &Q, own: impl Fn(&Q) -> T, heap: usize) -> usize
    where
        T: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(&id) = self.ids.get(value) {
            return id as usize;
        }
        self.heap += 2 * heap;
        let id = self.values.len();
        self.ids.insert(own(value), id as u32);
        self.values.push(Some(own(value)));
        id
    }

    fn size(&self) -> usize {
        self.ids.capacity() * (size_of::<T>() + size_of::<u32>() + 1)
            + self.values.capacity() * size_of::<Option<T>>()
            + self.heap
    }

    fn null_id(&mut self) -> usize {
        *self.null.get_or_insert_with(|| {
            self.values.push(None);
            (self.values.len() - 1) as u32
        }) as usize
    }
}

impl Key {
    fn supports(data_type: &DataType) -> bool {
        match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
            DataType::Dictionary(key, value) => {
                key.is_dictionary_key_type()
                    && matches!(
                        **value,
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    )
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
            | DataType::Duration(_) => data_type.primitive_width().is_some_and(|w| w <= 8),
            _ => false,
        }
    }

    fn new(data_type: &DataType) -> Result<Key> {
        if !Key::supports(data_type) {
            return internal_err!("DenseAggregateExec cannot group by {data_type}");
        }
        Ok(match data_type.primitive_width() {
            Some(width) => Key::Fixed {
                width,
                values: Values::new(),
            },
            // Strings, and dictionaries of strings (which have no primitive width).
            None => Key::Strings {
                values: Values::new(),
                views: ViewCache::new(),
                dictionary: DictionaryIds::default(),
            },
        })
    }

    fn len(&self) -> usize {
        match self {
            Key::Strings { values, .. } => values.values.len(),
            Key::Fixed { values, .. } => values.values.len(),
        }
    }

    fn size(&self) -> usize {
        match self {
            Key::Strings { values, .. } => values.size(),
            Key::Fixed { values, .. } => values.size(),
        }
    }

    /// Appends the id of each row's value to `ids`.
    fn assign(&mut self, column: &ArrayRef, ids: &mut Vec<usize>) -> Result<()> {
        match (self, column.data_type()) {
            (Key::Strings { values, views, .. }, DataType::Utf8View) => {
                assign_views(values, views, column.as_string_view(), ids);
            }
            (
                Key::Strings {
                    values, dictionary, ..
                },
                DataType::Dictionary(..),
            ) => {
                assign_dictionary(values, dictionary, column, ids)?;
            }
            (Key::Strings { values, .. }, DataType::Utf8) => {
                assign_strings(values, column.as_string::<i32>(), ids);
            }
            (Key::Strings { values, .. }, DataType::LargeUtf8) => {
                assign_strings(values, column.as_string::<i64>(), ids);
            }
            (Key::Fixed { width, values }, data_type)
                if data_type.primitive_width() == Some(*width) =>
            {
                assign_fixed(values, *width, column, ids);
            }
            (_, data_type) => {
                return internal_err!("DenseAggregateExec got a {data_type} key column");
            }
        }
        Ok(())
    }

    /// The values of `ids` as an array of `data_type`.
    fn emit(&self, ids: &[u32], data_type: &DataType) -> Result<ArrayRef> {
        match self {
            Key::Strings { values, .. } => {
                let texts = ids.iter().map(|&id| values.values[id as usize].as_deref());
                Ok(match data_type {
                    DataType::Utf8View => Arc::new(StringViewArray::from_iter(texts)),
                    DataType::Utf8 => Arc::new(StringArray::from_iter(texts)),
                    DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter(texts)),
                    DataType::Dictionary(..) => {
                        let strings = StringArray::from_iter(texts);
                        arrow::compute::cast(&strings, data_type)?
                    }
                    other => return internal_err!("string key emitted as {other}"),
                })
            }
            Key::Fixed { width, values } => {
                let mut bytes = Vec::with_capacity(ids.len() * width);
                let mut valid = Vec::with_capacity(ids.len());
                for &id in ids {
                    let value = values.values[id as usize];
                    valid.push(value.is_some());
                    bytes.extend_from_slice(&value.unwrap_or(0).to_le_bytes()[..*width]);
                }
                let nulls = NullBuffer::from(valid);
                let data = ArrayData::builder(data_type.clone())
                    .len(ids.len())
                    .add_buffer(Buffer::from_vec(bytes))
                    .nulls((nulls.null_count() > 0).then_some(nulls))
                    .build()?;
                Ok(make_array(data))
            }
        }
    }
}

/// Ids for a string-view column. Equal 16-byte views in one array hold the same string (the
/// same bytes inline, or the same place in the same buffer), so a row whose view equals the
/// row before's needs no lookup, and a view seen earlier in the array is found in a small
/// cache by its bits (a dictionary-encoded page decodes to repeated views). Views that differ
/// may still hold equal strings; the map settles those.
fn assign_views(
    values: &mut Values<Box<str>>,
    cache: &mut ViewCache,
    array: &StringViewArray,
    ids: &mut Vec<usize>,
) {
    let views = array.views();
    let Some(&first) = views.first() else {
        return;
    };
    cache.next_array();
    ids.reserve(views.len());
    let nulls = array.nulls().filter(|n| n.null_count() > 0);
    let null_id = null_id(values, array);
    let mut lookup = |row: usize, view: u128| view_id(values, cache, array, row, view);
    match nulls {
        None => {
            // Differs from the first view, so the first row is looked up.
            let mut last_view = !first;
            let mut last_id = 0;
            ids.extend(views.iter().enumerate().map(|(row, &view)| {
                if view != last_view {
                    last_id = lookup(row, view);
                    last_view = view;
                }
                last_id
            }))
        }
        Some(nulls) => {
            let rows = views
                .iter()
                .enumerate()
                .map(|(row, &view)| nulls.is_valid(row).then_some(view));
            assign_runs(rows, null_id, lookup, ids);
        }
    }
}

/// The id of the key of `array`'s `row`: NULL's id where the row is not `valid`, else its
/// value's ([`view_id`]).
fn key_id(
    values: &mut Values<Box<str>>,
    cache: &mut ViewCache,
    array: &StringViewArray,
    row: usize,
    valid: bool,
) -> usize {
    match valid {
        true => view_id(values, cache, array, row, array.views()[row]),
        false => values.null_id(),
    }
}

/// The id of the value of `array`'s `row`, whose view is `view`: from the cache of this array's
/// views, else looked up (and cached).
fn view_id(
    values: &mut Values<Box<str>>,
    cache: &mut ViewCache,
    array: &StringViewArray,
    row: usize,
    view: u128,
) -> usize {
    cache.get(view).unwrap_or_else(|| {
        let text = array.value(row);
        let id = values.id(text, |t: &str| t.into(), text.len());
        cache.put(view, id);
        id
    })
}

/// The id of NULL in `values` if `array` holds a NULL; otherwise 0, which no row reads.
fn null_id<T: std::hash::Hash + Eq + Clone>(values: &mut Values<T>, array: &dyn Array) -> usize {
    if array.null_count() > 0 {
        values.null_id()
    } else {
        0
    }
}

/// Pushes the id of each row's value (`None` is NULL, whose id is `null_id`): a value equal to
/// the row before's takes its id, any other is `lookup(row, value)`.
fn assign_runs<V: PartialEq + Copy>(
    rows: impl Iterator<Item = Option<V>>,
    null_id: usize,
    mut lookup: impl FnMut(usize, V) -> usize,
    ids: &mut Vec<usize>,
) {
    let mut last: Option<(V, usize)> = None;
    for (row, value) in rows.enumerate() {
        let Some(value) = value else {
            ids.push(null_id);
            last = None;
            continue;
        };
        let id = match last {
            Some((same, id)) if same == value => id,
            _ => lookup(row, value),
        };
        last = Some((value, id));
        ids.push(id);
    }
}

/// The ids of views seen in the current array, direct-mapped by the view's bits. Entries of
/// earlier arrays are told apart by `array`, so moving to the next array clears nothing.
struct ViewCache {
    slots: Vec<(u128, u32, u32)>,
    array: u32,
}

impl ViewCache {
    const SLOTS: usize = 256;

    fn new() -> ViewCache {
        ViewCache {
            slots: vec![(0, 0, 0); Self::SLOTS],
            array: 0,
        }
    }

    fn next_array(&mut self) {
        self.array = self.array.wrapping_add(1);
        if self.array == 0 {
            self.slots.fill((0, 0, 0));
            self.array = 1;
        }
    }

    fn slot(view: u128) -> usize {
        let mixed = (view as u64 ^ (view >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 56) as usize
    }

    fn get(&self, view: u128) -> Option<usize> {
        let (seen, id, array) = self.slots[Self::slot(view)];
        (array == self.array && seen == view).then_some(id as usize)
    }

    fn put(&mut self, view: u128, id: usize) {
        self.slots[Self::slot(view)] = (view, id as u32, self.array);
    }
}

/// The ids of one dictionary's values (`None`: a NULL value), kept while the batches share
/// that dictionary: the Parquet reader hands a column chunk's dictionary to every batch it
/// decodes from that chunk.
#[derive(Default)]
struct DictionaryIds {
    /// The values array the ids are for.
    of: Option<ArrayRef>,
    /// Its values as `Utf8`.
    texts: Option<ArrayRef>,
    /// By key: the value's id, or [`UNSEEN`] while no row had the key. A dictionary holds the
    /// values of a whole column chunk, and a filtered batch may use only some: a value no row
    /// has is no group.
    ids: Vec<usize>,
}

const UNSEEN: usize = usize::MAX;

impl DictionaryIds {
    /// Readies the ids of `dictionary`'s values, unless it is the values array of the batch
    /// before (batches of one column chunk share theirs).
    fn start(&mut self, dictionary: &ArrayRef) -> Result<()> {
        if !self
            .of
            .as_ref()
            .is_some_and(|of| Arc::ptr_eq(of, dictionary))
        {
            self.texts = Some(arrow::compute::cast(dictionary, &DataType::Utf8)?);
            self.ids.clear();
            self.ids.resize(dictionary.len(), UNSEEN);
            self.of = Some(Arc::clone(dictionary));
        }
        Ok(())
    }

    /// The id of `key`'s value (a NULL value is the NULL key), looked up the first time.
    #[inline]
    fn id(&mut self, values: &mut Values<Box<str>>, key: usize) -> usize {
        match self.ids[key] {
            UNSEEN => self.look_up(values, key),
            id => id,
        }
    }

    #[cold]
    fn look_up(&mut self, values: &mut Values<Box<str>>, key: usize) -> usize {
        let id = match self.texts.as_ref().map(|texts| texts.as_string::<i32>()) {
            Some(texts) if texts.is_valid(key) => {
                let text = texts.value(key);
                values.id(text, |t: &str| t.into(), text.len())
            }
            _ => values.null_id(),
        };
        self.ids[key] = id;
        id
    }
}

/// Ids for a dictionary column: each value is looked up once, the first time a row has its key,
/// and each row takes its key's id, with no string touched per row.
fn assign_dictionary(
    values: &mut Values<Box<str>>,
    cache: &mut DictionaryIds,
    column: &ArrayRef,
    ids: &mut Vec<usize>,
) -> Result<()> {
    let array = column.as_any_dictionary();
    let dictionary = array.values();
    cache.start(dictionary)?;
    let nulls = column.nulls().filter(|n| n.null_count() > 0);
    let null_id = match nulls {
        Some(_) => values.null_id(),
        None => 0,
    };
    ids.reserve(column.len());
    match column.data_type() {
        DataType::Dictionary(key, _) if **key == DataType::Int32 => {
            let keys = column.as_dictionary::<arrow::datatypes::Int32Type>().keys();
            let keys = keys.values();
            match nulls {
                None => ids.extend(keys.iter().map(|&key| cache.id(values, key as usize))),
                Some(nulls) => ids.extend(keys.iter().enumerate().map(|(row, &key)| {
                    if nulls.is_valid(row) {
                        cache.id(values, key as usize)
                    } else {
                        null_id
                    }
                })),
            }
        }
        // No values: every key is NULL (a valid key would be out of range).
        _ if dictionary.is_empty() => ids.extend(std::iter::repeat_n(null_id, column.len())),
        _ => {
            let keys = array.normalized_keys();
            ids.extend(keys.iter().enumerate().map(|(row, &key)| {
                if nulls.is_none_or(|n| n.is_valid(row)) {
                    cache.id(values, key)
                } else {
                    null_id
                }
            }));
        }
    }
    Ok(())
}

/// `count(*)` by a dictionary column: adds each group's rows to `tally` (grown to hold every
/// group id) by runs of equal keys, with no id written per row. A column with NULL keys is left
/// to the per-row path: returns false, having counted nothing.
fn tally_dictionary(
    values: &mut Values<Box<str>>,
    cache: &mut DictionaryIds,
    column: &ArrayRef,
    tally: &mut Vec<i64>,
) -> Result<bool> {
    let array = column.as_any_dictionary();
    // An empty dictionary's keys are all NULL (`normalized_keys` would panic on it).
    if column.null_count() > 0 || array.values().is_empty() {
        return Ok(false);
    }
    cache.start(array.values())?;
    match column.data_type() {
        DataType::Dictionary(key, _) if **key == DataType::Int32 => {
            let keys = column.as_dictionary::<arrow::datatypes::Int32Type>().keys();
            tally_runs(keys.values(), |key| cache.id(values, key as usize), tally);
        }
        _ => tally_runs(&array.normalized_keys(), |key| cache.id(values, key), tally),
    }
    Ok(true)
}

/// Adds one to `tally[id(key)]` for each of `keys`, growing `tally` to hold the ids. Rows of a
/// sorted file repeat the key before them, so equal keys are counted a run at a time (one
/// addition per run, where adding per row would wait on the previous addition to the same
/// counter). A stretch where the key changes often is counted row by row instead, until the
/// runs grow long again.
fn tally_runs<K: Copy + PartialEq>(
    keys: &[K],
    mut id: impl FnMut(K) -> usize,
    tally: &mut Vec<i64>,
) {
    const STRETCH: usize = 1024;
    // Runs in a stretch above this (an average run under 4 rows) count row by row.
    const SHORT: usize = STRETCH / 4;
    let mut add = |tally: &mut Vec<i64>, key: K, rows: usize| {
        let id = id(key);
        if id >= tally.len() {
            tally.resize(id + 1, 0);
        }
        tally[id] += rows as i64;
    };
    let mut by_rows = false;
    for stretch in keys.chunks(STRETCH) {
        if by_rows {
            let mut changes = 0;
            let mut last = stretch[0];
            for &key in stretch {
                add(tally, key, 1);
                changes += usize::from(key != last);
                last = key;
            }
            by_rows = changes >= SHORT;
        } else {
            let mut runs = 0;
            let mut rest = stretch;
            while let Some(&key) = rest.first() {
                // Whole blocks of the key first, compared without a branch per row.
                let mut run = 0;
                while let Some(block) = rest.get(run..run + 32) {
                    if !block.iter().fold(true, |same, &k| same & (k == key)) {
                        break;
                    }
                    run += 32;
                }
                run += rest[run..]
                    .iter()
                    .position(|&k| k != key)
                    .unwrap_or(rest.len() - run);
                add(tally, key, run);
                rest = &rest[run..];
                runs += 1;
            }
            by_rows = runs > SHORT;
        }
    }
}

fn assign_strings<O: OffsetSizeTrait>(
    values: &mut Values<Box<str>>,
    array: &GenericStringArray<O>,
    ids: &mut Vec<usize>,
) {
    let null_id = null_id(values, array);
    let lookup = |_, text: &str| values.id(text, |t: &str| t.into(), text.len());
    assign_runs(array.iter(), null_id, lookup, ids);
}

fn assign_fixed(values: &mut Values<u64>, width: usize, column: &ArrayRef, ids: &mut Vec<usize>) {
    let data = column.to_data();
    let start = data.offset() * width;
    let bytes = &data.buffers()[0].as_slice()[start..start + data.len() * width];
    let rows = bytes.chunks_exact(width).enumerate().map(|(row, chunk)| {
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(chunk);
        column.is_valid(row).then_some(u64::from_le_bytes(le))
    });
    let null_id = null_id(values, column.as_ref());
    assign_runs(rows, null_id, |_, value| values.id(&value, |v| *v, 0), ids);
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        DictionaryArray, Int64Array, StringArray, TimestampSecondArray, UInt8Array,
    };
    use arrow::datatypes::{Field, Int32Type, Schema, TimeUnit, UInt8Type};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use proptest::prelude::*;

    /// A row of the test table; `None` is NULL.
    type Row = (Option<u8>, Option<u8>, Option<i64>, i64, u8, Option<i64>);

    /// Short strings are inlined in their views, long ones are not: both kinds are keys.
    fn text(pick: u8) -> String {
        match pick % 4 {
            0 => format!("z{pick}"),
            1 => format!("a-much-longer-key-than-twelve-bytes-{pick}"),
            2 => String::new(),
            _ => format!("k{}", pick / 4),
        }
    }

    fn table(partitions: &[Vec<Vec<Row>>]) -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("t", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("u", DataType::UInt8, false),
            Field::new("v", DataType::Int64, true),
            // As the archive's labels are read, and with keys of another width.
            Field::new("d", label(DataType::Int32), true),
            Field::new("e", label(DataType::UInt8), true),
            // A label without NULLs, which `count(*)` counts by runs of keys.
            Field::new("w", label(DataType::Int32), false),
            // Views without NULLs: with `s`, rows are grouped by comparing their views.
            Field::new("x", DataType::Utf8View, false),
        ]));
        let batches = partitions
            .iter()
            .map(|batches| {
                batches
                    .iter()
                    .map(|rows| {
                        let s = StringViewArray::from_iter(rows.iter().map(|r| r.0.map(text)));
                        let t = StringArray::from_iter(rows.iter().map(|r| r.1.map(text)));
                        let columns: Vec<ArrayRef> = vec![
                            Arc::new(s),
                            Arc::new(t),
                            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                            Arc::new(TimestampSecondArray::from_iter_values(
                                rows.iter().map(|r| r.3),
                            )),
                            Arc::new(UInt8Array::from_iter_values(rows.iter().map(|r| r.4))),
                            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.5))),
                            Arc::new(dictionary::<Int32Type>(rows.iter().map(|r| r.0))),
                            Arc::new(dictionary::<UInt8Type>(rows.iter().map(|r| r.1))),
                            Arc::new(dictionary::<Int32Type>(rows.iter().map(|r| Some(r.4 % 8)))),
                            Arc::new(StringViewArray::from_iter_values(
                                rows.iter().map(|r| text(r.4 % 6)),
                            )),
                        ];
                        RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
                    })
                    .collect()
            })
            .collect();
        MemTable::try_new(schema, batches).unwrap()
    }

    fn context(dense: bool) -> SessionContext {
        context_with(dense, 2)
    }

    fn context_with(dense: bool, partitions: usize) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_option_extension(QueryOptions::default());
        config
            .options_mut()
            .extensions
            .get_mut::<QueryOptions>()
            .unwrap()
            .dense_group_by = dense;
        session(config)
    }

    /// The result's rows as text, sorted, and the physical plan.
    fn run(context: &SessionContext, sql: &str) -> (Vec<String>, String) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let frame = context.sql(sql).await.unwrap();
            let plan = frame.clone().create_physical_plan().await.unwrap();
            let plan = displayable(plan.as_ref()).indent(false).to_string();
            let batches = frame.collect().await.unwrap();
            let mut rows = Vec::new();
            let options = FormatOptions::default().with_null("NULL");
            for batch in &batches {
                let formatters: Vec<_> = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                    .collect();
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect();
                    rows.push(cells.join("|"));
                }
            }
            rows.sort();
            (rows, plan)
        })
    }

    /// The texts of `picks` as a dictionary column with `K` keys.
    fn dictionary<K: arrow::datatypes::ArrowDictionaryKeyType>(
        picks: impl Iterator<Item = Option<u8>>,
    ) -> DictionaryArray<K> {
        let texts: Vec<Option<String>> = picks.map(|pick| pick.map(text)).collect();
        texts.iter().map(Option::as_deref).collect()
    }

    fn label(key: DataType) -> DataType {
        DataType::Dictionary(Box::new(key), Box::new(DataType::Utf8))
    }

    const QUERIES: [&str; 20] = [
        "SELECT s, count(*), sum(v), min(v), max(v), avg(v), count(v) FROM data GROUP BY s",
        "SELECT s, t, n, count(*), sum(v) FROM data GROUP BY s, t, n",
        "SELECT ts, u, count(DISTINCT s) FROM data GROUP BY ts, u",
        "SELECT t, sum(v) FILTER (WHERE v > 0), count(*) FILTER (WHERE n IS NULL) \
         FROM data GROUP BY t",
        "SELECT n, u, s, t, max(ts) FROM data GROUP BY n, u, s, t",
        "SELECT s || t AS st, count(*) FROM data WHERE u < 200 GROUP BY st",
        "SELECT d, count(*), sum(v) FROM data GROUP BY d",
        "SELECT e, d, n, count(*), max(v) FROM data GROUP BY e, d, n",
        // Only `count(*)`: rows are counted, not fed to accumulators; by runs of keys for a
        // dictionary without NULL keys (w, and d or e in a batch without NULLs).
        "SELECT w, count(*) FROM data GROUP BY w",
        "SELECT d, count(*), count(1) FROM data GROUP BY d",
        "SELECT e, count(*) FROM data WHERE u > 20 GROUP BY e",
        "SELECT t, n, count(*) FROM data GROUP BY t, n",
        "SELECT w, u, count(*) FROM data GROUP BY w, u",
        "SELECT w FROM data WHERE u < 100 GROUP BY w",
        // Two or more views, by comparing rows' views (and where `s` or `tv` is NULL).
        "SELECT x, s, count(*), max(v) FROM data GROUP BY x, s",
        "SELECT s, x, u, count(*) FROM data WHERE v IS NOT NULL GROUP BY s, x, u",
        "SELECT s, count(DISTINCT x) FROM data GROUP BY s",
        "SELECT x, s, arrow_cast(t, 'Utf8View') AS tv, count(*) FROM data GROUP BY x, s, tv",
        // With no aggregate (the inner step of a DISTINCT, and a plain GROUP BY): the groups
        // are added without an id per row.
        "SELECT x, count(DISTINCT s) FROM data GROUP BY x",
        "SELECT s, arrow_cast(t, 'Utf8View') AS tv FROM data GROUP BY s, tv",
    ];

    fn rows() -> impl Strategy<Value = Vec<Vec<Vec<Row>>>> {
        // Few distinct keys, so groups repeat within and across batches, and runs of equal
        // keys as in the archive's sorted files.
        let key = prop_oneof![3 => (0u8..12).prop_map(Some), 1 => Just(None)];
        let row = (
            key.clone(),
            key,
            prop_oneof![3 => (-3i64..3).prop_map(Some), 1 => Just(None)],
            0i64..4,
            0u8..=255,
            prop_oneof![3 => (-100i64..100).prop_map(Some), 1 => Just(None)],
        );
        let run = (row, 1usize..6).prop_map(|(row, n)| vec![row; n]);
        let batch = prop::collection::vec(run, 0..12).prop_map(|runs| runs.concat());
        prop::collection::vec(prop::collection::vec(batch, 0..4), 1..3)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn dense_aggregation_gives_what_datafusion_gives(partitions in rows()) {
            let dense = context(true);
            let plain = context(false);
            for context in [&dense, &plain] {
                context.register_table("data", Arc::new(table(&partitions))).unwrap();
            }
            for sql in QUERIES {
                let (expected, plain_plan) = run(&plain, sql);
                let (got, dense_plan) = run(&dense, sql);
                prop_assert!(!plain_plan.contains("DenseAggregateExec"), "{plain_plan}");
                prop_assert!(dense_plan.contains("DenseAggregateExec"), "{dense_plan}");
                prop_assert_eq!(got, expected, "{}", sql);
            }
        }
    }

    proptest! {
        #[test]
        fn counting_by_runs_counts_every_row(
            // Stretches of short runs and of long ones, so that counting switches between
            // runs and rows, both ways.
            segments in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec((0u8..6, 1usize..3), 300..700),
                    prop::collection::vec((0u8..6, 50usize..500), 1..10),
                ],
                0..5,
            ),
        ) {
            let keys: Vec<u8> = segments
                .iter()
                .flatten()
                .flat_map(|&(key, n)| std::iter::repeat_n(key, n))
                .collect();
            let mut expected = [0i64; 6];
            for &key in &keys {
                expected[key as usize] += 1;
            }
            let mut tally = Vec::new();
            tally_runs(&keys, usize::from, &mut tally);
            tally.resize(6, 0);
            prop_assert_eq!(tally, expected.to_vec());
        }
    }

    #[test]
    fn batches_that_share_a_dictionary_and_batches_with_their_own_group_alike() {
        // As the Parquet reader hands them over: the batches of one column chunk share its
        // dictionary (the same values array); the next chunk brings another, in which the same
        // value may have another key, and a key may be NULL.
        let shared: ArrayRef = Arc::new(StringArray::from(vec!["internet", "corp"]));
        let other: ArrayRef = Arc::new(StringArray::from(vec![Some("corp"), None, Some("prod")]));
        let batch = |keys: Vec<Option<i32>>, values: &ArrayRef| {
            let keys = arrow::array::Int32Array::from(keys);
            let column = DictionaryArray::<Int32Type>::try_new(keys, Arc::clone(values)).unwrap();
            let schema = Arc::new(Schema::new(vec![Field::new(
                "zone",
                label(DataType::Int32),
                true,
            )]));
            RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap()
        };
        // A chunk's dictionary holds values a filtered batch need not have: no group.
        let unused: ArrayRef = Arc::new(StringArray::from(vec!["staging", "prod"]));
        // Batches without NULL keys are counted by runs of keys, the one with a NULL key row
        // by row; the fourth has a key whose value is NULL.
        let batches = vec![
            batch(vec![Some(0), Some(0), Some(1)], &shared),
            batch(vec![Some(1), Some(0)], &shared),
            batch(vec![Some(0), Some(1), None, Some(2), Some(2)], &other),
            batch(vec![Some(1), Some(1), Some(2)], &other),
            batch(vec![Some(1)], &unused),
        ];
        let schema = batches[0].schema();
        let dense = context_with(true, 1);
        let plain = context_with(false, 1);
        for context in [&dense, &plain] {
            let table = MemTable::try_new(Arc::clone(&schema), vec![batches.clone()]).unwrap();
            context.register_table("events", Arc::new(table)).unwrap();
        }
        let sql = "SELECT zone, count(*) FROM events GROUP BY zone";
        let (expected, _) = run(&plain, sql);
        let (got, plan) = run(&dense, sql);
        assert!(plan.contains("DenseAggregateExec"), "{plan}");
        assert_eq!(got, expected);
        assert_eq!(got, vec!["NULL|4", "corp|3", "internet|3", "prod|4"]);
        // The same through the per-row path (an aggregate that is not `count(*)`).
        let sql = "SELECT zone, count(*), max(zone) FROM events GROUP BY zone";
        let (expected, _) = run(&plain, sql);
        let (got, _) = run(&dense, sql);
        assert_eq!(got, expected);
        assert_eq!(got.len(), 4, "{got:?}");
    }

    #[test]
    fn what_it_does_not_fit_keeps_datafusions_plan() {
        let dense = context(true);
        dense
            .register_table(
                "data",
                Arc::new(table(&[vec![vec![(
                    Some(1),
                    None,
                    Some(1),
                    0,
                    1,
                    Some(2),
                )]]])),
            )
            .unwrap();
        for sql in [
            // An aggregate with its own order.
            "SELECT s, array_agg(v ORDER BY v) FROM data GROUP BY s",
            // A floating-point key.
            "SELECT CAST(v AS DOUBLE) AS f, count(*) FROM data GROUP BY f",
            // Grouping sets.
            "SELECT s, t, count(*) FROM data GROUP BY ROLLUP (s, t)",
            // No key at all.
            "SELECT count(*), sum(v) FROM data",
        ] {
            let (_, plan) = run(&dense, sql);
            assert!(!plan.contains("DenseAggregateExec"), "{sql}:\n{plan}");
        }
        let (rows, plan) = run(&dense, "SELECT s, count(*) FROM data GROUP BY s");
        assert!(plan.contains("DenseAggregateExec"), "{plan}");
        assert_eq!(rows, vec!["a-much-longer-key-than-twelve-bytes-1|1"]);
    }

    #[test]
    fn a_key_that_hardly_repeats_is_handed_over_to_datafusions_aggregation() {
        let rows = 3 * PROBE_ROWS;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8View, false),
            Field::new("few", DataType::Utf8View, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batches: Vec<RecordBatch> = (0..rows)
            .collect::<Vec<_>>()
            .chunks(8192)
            .map(|chunk| {
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringViewArray::from_iter_values(
                        chunk.iter().map(|i| format!("event-{}", i / 2)),
                    )),
                    Arc::new(StringViewArray::from_iter_values(
                        chunk.iter().map(|i| format!("zone-{}", i / 10_000)),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        chunk.iter().map(|&i| i as i64),
                    )),
                ];
                RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
            })
            .collect();
        for partitions in [1, 2] {
            let dense = context_with(true, partitions);
            let plain = context_with(false, partitions);
            for context in [&dense, &plain] {
                let table = MemTable::try_new(Arc::clone(&schema), vec![batches.clone()]).unwrap();
                context.register_table("big", Arc::new(table)).unwrap();
            }
            for (sql, handed_over) in [
                ("SELECT k, count(*), sum(v) FROM big GROUP BY k", true),
                ("SELECT few, count(*), sum(v) FROM big GROUP BY few", false),
            ] {
                let (expected, _) = run(&plain, sql);
                let (got, plan) = run(&dense, sql);
                assert!(plan.contains("DenseAggregateExec"), "{plan}");
                assert_eq!(got, expected, "{sql}");
                let (analyzed, _) = run(&dense, &format!("EXPLAIN ANALYZE {sql}"));
                let analyzed = analyzed.join("\n");
                assert_eq!(
                    !analyzed.contains("handed_over=0"),
                    handed_over,
                    "{partitions} partitions, {sql}:\n{analyzed}"
                );
            }
        }
    }
}
