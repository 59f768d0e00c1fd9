//! One plugin instance: a `Store` with limits, and typed calls to its exports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::exports::cairn::plugin::{collector, plugin, restorer, sink};
use crate::error::{PluginCallError, TrapReason};
use crate::host::{DeadlineExceeded, HostState};
use crate::plugin::ExportIndices;
use crate::types::{
    Action, Outcome, PluginError, PluginInfo, RestoreRequest, SinkError, Step, Task,
};
use crate::{Capabilities, Limits, Runtime};

/// The export handles of an instance (plain indices into its store).
struct Guests {
    plugin: plugin::Guest,
    collector: Option<collector::Guest>,
    sink: Option<sink::Guest>,
    restorer: Option<restorer::Guest>,
}

/// A running plugin instance. Not shared between threads at once; make one per worker.
pub struct PluginInstance {
    // Keeps the engine (and its epoch ticker) alive as long as the instance.
    _runtime: Arc<Runtime>,
    name: String,
    store: Store<HostState>,
    guests: Guests,
    limits: Limits,
    fuel: bool,
    poisoned: bool,
}

impl PluginInstance {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: &str,
        pre: &InstancePre<HostState>,
        exports: &ExportIndices,
        caps: Capabilities,
        limits: &Limits,
    ) -> anyhow::Result<PluginInstance> {
        let mut store = Store::new(
            runtime.engine(),
            HostState::new(name, caps, limits.memory_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.guest_time() > state.guest_limit {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        let fuel = runtime.config().fuel;
        if fuel {
            store.set_fuel(limits.fuel_per_call.unwrap_or(u64::MAX))?;
        }
        store.data_mut().call_started = Instant::now();
        store.data_mut().guest_limit = limits.call_timeout;
        store.set_epoch_deadline(1);
        let instance: Instance = pre.instantiate(&mut store)?;
        let plugin = exports.plugin.load(&mut store, &instance)?;
        let collector = match &exports.collector {
            Some(i) => Some(i.load(&mut store, &instance)?),
            None => None,
        };
        let sink = match &exports.sink {
            Some(i) => Some(i.load(&mut store, &instance)?),
            None => None,
        };
        let restorer = match &exports.restorer {
            Some(i) => Some(i.load(&mut store, &instance)?),
            None => None,
        };
        Ok(PluginInstance {
            _runtime: runtime,
            name: name.to_string(),
            store,
            guests: Guests {
                plugin,
                collector,
                sink,
                restorer,
            },
            limits: limits.clone(),
            fuel,
            poisoned: false,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True once a call was stopped; the instance must then be discarded.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Sets the task name attached to the plugin's log lines.
    pub fn set_task(&mut self, task: Option<&str>) {
        self.store.data_mut().task = task.map(str::to_string);
    }

    /// The plugin's linear memory at its largest so far, in bytes: what the instance holds
    /// until it is dropped (linear memory grows, it never shrinks).
    pub fn linear_memory_peak(&self) -> usize {
        self.store.data().limiter.peak
    }

    /// Guest time the last call used (host imports excluded).
    pub fn last_guest_time(&self) -> Duration {
        self.store.data().guest_time()
    }

    /// Runs one export call under the instance's limits and classifies any failure.
    fn call<R>(
        &mut self,
        export: &str,
        f: impl FnOnce(&Guests, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginCallError> {
        if self.poisoned {
            return Err(PluginCallError::Poisoned {
                plugin: self.name.clone(),
            });
        }
        // Reset the per-call budgets.
        {
            let data = self.store.data_mut();
            data.call_started = Instant::now();
            data.host_time = Duration::ZERO;
            data.guest_limit = self.limits.call_timeout;
            data.limiter.hit = false;
        }
        if self.fuel {
            let _ = self
                .store
                .set_fuel(self.limits.fuel_per_call.unwrap_or(u64::MAX));
        }
        self.store.set_epoch_deadline(1);

        let result = f(&self.guests, &mut self.store);
        result.map_err(|e| {
            self.poisoned = true;
            let reason = self.classify(&e);
            tracing::warn!(plugin = %self.name, export, %reason, "plugin call stopped");
            PluginCallError::Stopped {
                plugin: self.name.clone(),
                export: export.to_string(),
                reason,
            }
        })
    }

    fn classify(&self, e: &wasmtime::Error) -> TrapReason {
        let data = self.store.data();
        if e.downcast_ref::<DeadlineExceeded>().is_some()
            || e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
        {
            return TrapReason::Timeout {
                limit_secs: self.limits.call_timeout.as_secs_f64(),
            };
        }
        if data.limiter.hit {
            return TrapReason::Memory {
                cap_bytes: data.limiter.cap,
            };
        }
        if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            return TrapReason::Fuel;
        }
        let output = data.stderr.take();
        let panic: Vec<&str> = output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let what = match e.downcast_ref::<Trap>() {
            Some(t) => t.to_string(),
            None => format!("{e:#}"),
        };
        if panic.is_empty() {
            TrapReason::Trap(what)
        } else {
            TrapReason::Trap(format!("{what}; the plugin printed: {}", panic.join(" | ")))
        }
    }

    /// `plugin.describe`.
    pub fn describe(&mut self) -> Result<PluginInfo, PluginCallError> {
        self.call("describe", |s, store| s.plugin.call_describe(store))
    }

    /// `plugin.configure` with the config as JSON.
    pub fn configure(&mut self, config: &str) -> Result<Result<(), PluginError>, PluginCallError> {
        self.call("configure", |s, store| {
            s.plugin.call_configure(store, config)
        })
    }

    fn not_exported(&self, kind: &'static str) -> PluginCallError {
        PluginCallError::NotExported {
            plugin: self.name.clone(),
            kind,
        }
    }

    /// `collector.plan`.
    pub fn plan_tasks(&mut self) -> Result<Result<Vec<Task>, PluginError>, PluginCallError> {
        if self.guests.collector.is_none() {
            return Err(self.not_exported("collector"));
        }
        self.call("collector.plan", |s, store| {
            s.collector.as_ref().expect("checked").call_plan(store)
        })
    }

    /// `collector.run-step`.
    pub fn run_step(
        &mut self,
        task: &Task,
        state: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Result<Step, PluginError>, PluginCallError> {
        if self.guests.collector.is_none() {
            return Err(self.not_exported("collector"));
        }
        self.call("collector.run-step", |s, store| {
            s.collector
                .as_ref()
                .expect("checked")
                .call_run_step(store, task, state, cursor)
        })
    }

    /// `sink.put`.
    pub fn sink_put(
        &mut self,
        key: &str,
        data: &[u8],
    ) -> Result<Result<bool, SinkError>, PluginCallError> {
        if self.guests.sink.is_none() {
            return Err(self.not_exported("sink"));
        }
        self.call("sink.put", |s, store| {
            s.sink.as_ref().expect("checked").call_put(store, key, data)
        })
    }

    /// `sink.get`.
    pub fn sink_get(&mut self, key: &str) -> Result<Result<Vec<u8>, SinkError>, PluginCallError> {
        if self.guests.sink.is_none() {
            return Err(self.not_exported("sink"));
        }
        self.call("sink.get", |s, store| {
            s.sink.as_ref().expect("checked").call_get(store, key)
        })
    }

    /// `sink.list`.
    pub fn sink_list(
        &mut self,
        prefix: &str,
    ) -> Result<Result<Vec<String>, SinkError>, PluginCallError> {
        if self.guests.sink.is_none() {
            return Err(self.not_exported("sink"));
        }
        self.call("sink.list", |s, store| {
            s.sink.as_ref().expect("checked").call_list(store, prefix)
        })
    }

    /// `sink.delete`.
    pub fn sink_delete(&mut self, key: &str) -> Result<Result<bool, SinkError>, PluginCallError> {
        if self.guests.sink.is_none() {
            return Err(self.not_exported("sink"));
        }
        self.call("sink.delete", |s, store| {
            s.sink.as_ref().expect("checked").call_delete(store, key)
        })
    }

    /// `restorer.plan`.
    pub fn restore_plan(
        &mut self,
        request: &RestoreRequest,
    ) -> Result<Result<Vec<Action>, PluginError>, PluginCallError> {
        if self.guests.restorer.is_none() {
            return Err(self.not_exported("restorer"));
        }
        self.call("restorer.plan", |s, store| {
            s.restorer
                .as_ref()
                .expect("checked")
                .call_plan(store, request)
        })
    }

    /// `restorer.apply`.
    pub fn restore_apply(
        &mut self,
        action: &Action,
    ) -> Result<Result<Outcome, PluginError>, PluginCallError> {
        if self.guests.restorer.is_none() {
            return Err(self.not_exported("restorer"));
        }
        self.call("restorer.apply", |s, store| {
            s.restorer
                .as_ref()
                .expect("checked")
                .call_apply(store, action)
        })
    }
}
