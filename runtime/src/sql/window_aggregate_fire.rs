//! A window aggregate's firings: a window's groups go out once the
//! watermark (or, on processing time, the clock) passes its end, and with
//! early firing the groups changed since they last fired go out before.

use super::WindowAggregate;
use crate::data::Batch;
use crate::error::Result;
use crate::sql::early_fire::fire_groups;
use crate::sql::groups::Groups;
use crate::sql::rows::Rows;

impl WindowAggregate {
    /// The results of `groups`, all of window `(end, start)`, as inserts.
    fn fire(&mut self, (end, start): (i64, i64), groups: Groups) -> Result<Option<Rows>> {
        let n = groups.len();
        if n == 0 {
            return Ok(None);
        }
        let (keys, results) = groups.emit(&self.converter)?;
        let batch = self.spec.output((end, start), n, keys, results)?;
        Ok(Some(Rows::inserts(batch)))
    }

    /// Fires every window whose last millisecond is at or before `time`.
    pub(super) fn fire_until(&mut self, time: i64, output: &mut Batch<Rows>) -> Result<()> {
        while let Some(entry) = self.panes.first_entry() {
            if entry.key().0 - 1 > time {
                break;
            }
            let (window, mut pane) = entry.remove_entry();
            if self.spec.early_fire.is_some() {
                let all: Vec<usize> = (0..pane.groups.len()).collect();
                let spec = self.spec.clone();
                output.extend(fire_groups(
                    &spec,
                    &self.converter,
                    window,
                    &mut pane.groups,
                    &mut pane.firings,
                    &all,
                )?);
            } else {
                output.extend(self.fire(window, pane.groups)?);
            }
        }
        Ok(())
    }

    /// Fires the groups changed since they last fired, in every open window.
    pub(super) fn fire_changed(&mut self, output: &mut Batch<Rows>) -> Result<()> {
        let spec = self.spec.clone();
        for (&window, pane) in &mut self.panes {
            let changed = pane.firings.changed();
            if !changed.is_empty() {
                output.extend(fire_groups(
                    &spec,
                    &self.converter,
                    window,
                    &mut pane.groups,
                    &mut pane.firings,
                    &changed,
                )?);
            }
        }
        Ok(())
    }
}
