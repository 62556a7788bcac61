//! Hot reload: the config file read again and applied all or nothing.
//!
//! [`Broker::reload`] works in two phases, so that a refused reload leaves
//! the broker exactly as it was:
//!
//! 1. **Prepare**, touching nothing the broker serves from: every plugin
//!    whose `[plugins.<name>]` table or component file (SHA-256 of its bytes)
//!    changed is compiled and pre-linked with the broker's one engine; every
//!    topic whose hooks change (a `[topics.<name>]` hook that differs from
//!    its stored settings, or a plugin it uses that changed) gets new
//!    validator and retention instances, `init` called; every new
//!    `[topics.<name>]` is resolved and its hooks instantiated. Each failure
//!    is collected, naming the plugin and topic; if there is any, the reload
//!    is refused with all of them ([`BrokerError::ReloadRefused`]).
//! 2. **Apply**: new topics' directories are made and opened (not yet
//!    served), then changed topics' `settings.json` rewritten atomically;
//!    a failure there undoes what this reload wrote and refuses it. Then
//!    the swaps, none of which can fail: plugins, config (new defaults and
//!    `max_body` for what comes next), each topic's hooks (one pointer each,
//!    taken by the writer between two groups; in-flight calls finish on the
//!    old instances they hold), and the new topics are registered.
//!
//! A reload holds the broker's `reloading` lock for writing from start to
//! end, and a topic create holds it for reading: creates wait for a reload
//! in progress and then take what it put in force, so no topic is left on
//! a plugin instance the reload replaced.
//!
//! Server keys read only at start (`listen`, `data_dir`, `monitor_interval`,
//! `fsync`, `index_entries`, `log_level`) keep their running values and are
//! reported as needing a restart; so is a changed codec plugin that a topic
//! uses, since codecs live in the log. Settings of existing topics other
//! than their hooks are stored whole at creation and not changed here.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Broker, BrokerError, Plugins, Reserved, View, remove_topic_files};
use crate::config::{Config, Settings, SettingsInput, Strictness, resolve_settings};
use crate::lock::Recover;
use crate::log::LogOptions;
use crate::topic::{Hooks, Topic};

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// What changed, one line each (`plugin json: reloaded`, `topic orders:
    /// hooks swapped`, `topic audit: created`, `defaults`).
    pub changed: Vec<String>,
    /// What changed in the file but needs a restart, not applied.
    pub needs_restart: Vec<String>,
}

/// A topic whose hooks a reload swaps.
struct Swap {
    topic: Arc<Topic>,
    old: Settings,
    new: Settings,
    hooks: Hooks,
    why: &'static str,
}

/// A topic a reload creates.
struct Create {
    name: String,
    settings: Settings,
    hooks: Hooks,
    opts: LogOptions,
}

/// Everything phase 1 made, waiting to be applied.
#[derive(Default)]
struct Plan {
    plugins: Plugins,
    swaps: Vec<Swap>,
    creates: Vec<Create>,
    report: ReloadReport,
    errors: Vec<String>,
}

impl Broker {
    /// Reads the config again from where it first came from (the file and
    /// flags of [`Config::source`]), for [`Broker::reload`]. Blocking.
    pub fn source_config(&self) -> Result<Config, BrokerError> {
        let source = self.config().source.clone();
        if source.config.is_none() {
            return refused("no config file to read again: start netlog with --config FILE".into());
        }
        crate::config::load(&source).or_else(|e| refused(e.to_string()))
    }

    /// Applies `new` all or nothing (see the module docs). One reload runs
    /// at a time. Blocking.
    pub fn reload(&self, new: Config) -> Result<ReloadReport, BrokerError> {
        let _one = self.reloading.write().recover();
        let old = self.config();
        let mut plan = Plan::default();
        let new = keep_start_only(&old, new, &mut plan.report.needs_restart);
        let changed = self.prepare_plugins(&new, &mut plan);
        self.prepare_topics(&new, &changed, &mut plan);
        if !plan.errors.is_empty() {
            for e in &plan.errors {
                tracing::error!(error = %e, "reload refused");
            }
            return Err(BrokerError::ReloadRefused {
                errors: plan.errors,
            });
        }
        if old.defaults != new.defaults {
            plan.report.changed.push("defaults".into());
        }
        if old.max_body != new.max_body {
            plan.report.changed.push("server max_body".into());
        }
        self.apply(new, plan)
    }

    /// Loads every plugin that is new or changed; keeps the others. Returns
    /// the names of plugins that are new, changed or gone.
    fn prepare_plugins(&self, new: &Config, plan: &mut Plan) -> BTreeSet<String> {
        let current = self.plugins.load();
        let mut changed = BTreeSet::new();
        for decl in &new.plugins {
            let name = &decl.name;
            let same = current.get(name).filter(|l| {
                l.decl == *decl && super::file_digest(decl).is_ok_and(|d| d == l.digest)
            });
            if let Some(loaded) = same {
                plan.plugins.insert(name.clone(), loaded.clone());
                continue;
            }
            match self.load_plugin(decl) {
                Ok(loaded) => {
                    let what = if current.contains_key(name) {
                        "reloaded"
                    } else {
                        "loaded"
                    };
                    plan.report.changed.push(format!("plugin {name}: {what}"));
                    plan.plugins.insert(name.clone(), loaded);
                    changed.insert(name.clone());
                }
                Err(e) => {
                    plan.errors.push(e.to_string());
                    // Keep the old one in the plan, so topics using it do
                    // not add errors of their own: the reload fails anyway.
                    if let Some(loaded) = current.get(name) {
                        plan.plugins.insert(name.clone(), loaded.clone());
                    }
                }
            }
        }
        for name in current.keys() {
            if !new.plugins.iter().any(|d| d.name == *name) {
                plan.report.changed.push(format!("plugin {name}: removed"));
                changed.insert(name.clone());
            }
        }
        changed
    }

    /// Plans the hook swaps of existing topics and the new topics.
    fn prepare_topics(&self, new: &Config, changed: &BTreeSet<String>, plan: &mut Plan) {
        let plugins = std::mem::take(&mut plan.plugins);
        let view = View {
            config: new,
            plugins: &plugins,
        };
        let names = new.plugin_names();
        let resolve = |input: &SettingsInput| {
            resolve_settings(input.clone(), &new.defaults, &names, Strictness::Refuse)
        };
        let mut existing = BTreeSet::new();
        for topic in self.topics() {
            existing.insert(topic.name().to_string());
            let old = topic.settings();
            let mut wanted = old.clone();
            if let Some(input) = new.topics.get(topic.name()) {
                match resolve(input) {
                    Ok(s) => {
                        wanted.validation = s.validation;
                        wanted.retention = s.retention;
                    }
                    Err(e) => {
                        plan.errors.push(format!("[topics.{}]: {e}", topic.name()));
                        continue;
                    }
                }
            }
            self.plan_topic(&view, topic, old, wanted, changed, plan);
        }
        for (name, input) in &new.topics {
            if existing.contains(name) {
                continue;
            }
            let built = resolve(input)
                .map_err(BrokerError::from)
                .and_then(|s| Ok((view.build_hooks(name, &s)?, s)));
            match built {
                Ok(((hooks, opts), settings)) => plan.creates.push(Create {
                    name: name.clone(),
                    settings,
                    hooks,
                    opts,
                }),
                Err(e) => plan.errors.push(format!("[topics.{name}]: {e}")),
            }
        }
        plan.plugins = plugins;
    }

    /// Plans one existing topic: new instances when its hooks or their
    /// plugins changed; an error when a plugin it keeps is gone.
    fn plan_topic(
        &self,
        view: &View<'_>,
        topic: Arc<Topic>,
        old: Settings,
        wanted: Settings,
        changed: &BTreeSet<String>,
        plan: &mut Plan,
    ) {
        let name = topic.name().to_string();
        let hooks_changed =
            old.validation != wanted.validation || old.retention != wanted.retention;
        let uses_changed = [&wanted.validation, &wanted.retention]
            .into_iter()
            .flatten()
            .any(|h| changed.contains(&h.plugin));
        for codec in wanted.codecs.values().filter(|c| changed.contains(*c)) {
            if view.plugins.contains_key(codec) {
                plan.report.needs_restart.push(format!(
                    "topic {name}: codec plugin {codec} changed; the topic keeps the old one until restart"
                ));
            } else {
                plan.errors.push(format!(
                    "plugin {codec} is removed but topic {name} stores data with it: keep its [plugins.{codec}] table"
                ));
            }
        }
        if !hooks_changed && !uses_changed {
            return;
        }
        match view.build_swappable(&name, &wanted) {
            Ok(hooks) => plan.swaps.push(Swap {
                topic,
                old,
                new: wanted,
                hooks,
                why: if hooks_changed {
                    "hooks changed"
                } else {
                    "hooks re-instantiated: plugin changed"
                },
            }),
            Err(e) => plan.errors.push(e.to_string()),
        }
    }

    /// Phase 2 (see the module docs).
    fn apply(&self, new: Config, mut plan: Plan) -> Result<ReloadReport, BrokerError> {
        let mut reserved: Vec<Reserved<'_>> = Vec::new();
        let mut created: Vec<Arc<Topic>> = Vec::new();
        let undo_creates = |created: &[Arc<Topic>]| {
            for t in created {
                let _ = t.close();
                remove_topic_files(t.dir());
            }
        };
        for c in plan.creates.drain(..) {
            let opened = self.reserve(&c.name).and_then(|r| {
                reserved.push(r);
                if self.topic(&c.name).is_ok() {
                    return Err(BrokerError::TopicExists);
                }
                self.open_new_topic(&c.name, c.settings, c.hooks, c.opts)
            });
            match opened {
                Ok(t) => created.push(t),
                Err(e) => {
                    undo_creates(&created);
                    return refused(format!("[topics.{}]: {e}", c.name));
                }
            }
        }
        for (i, s) in plan.swaps.iter().enumerate() {
            if let Err(e) = s.topic.store_settings(&s.new) {
                for back in &plan.swaps[..i] {
                    let _ = back.topic.store_settings(&back.old);
                }
                undo_creates(&created);
                return refused(format!("topic {}: {e}", s.topic.name()));
            }
        }
        // From here on nothing fails.
        self.plugins.store(Arc::new(plan.plugins));
        self.groups().set_limits(new.groups);
        self.config.store(Arc::new(new));
        for s in plan.swaps {
            s.topic.replace_hooks(s.new, s.hooks);
            tracing::info!(topic = s.topic.name(), why = s.why, "topic hooks swapped");
            plan.report
                .changed
                .push(format!("topic {}: {}", s.topic.name(), s.why));
        }
        let mut topics = self.topics_mut();
        for t in created {
            plan.report
                .changed
                .push(format!("topic {}: created", t.name()));
            topics.insert(t.name().to_string(), t);
        }
        drop(topics);
        drop(reserved);
        let report = plan.report;
        tracing::info!(changed = ?report.changed, needs_restart = ?report.needs_restart, "config reloaded");
        Ok(report)
    }
}

fn refused<T>(error: String) -> Result<T, BrokerError> {
    tracing::error!(%error, "reload refused");
    Err(BrokerError::ReloadRefused {
        errors: vec![error],
    })
}

/// Keeps the running values of server keys read only at start, listing
/// those the new config changes.
fn keep_start_only(old: &Config, mut new: Config, needs_restart: &mut Vec<String>) -> Config {
    macro_rules! keep {
        ($($key:ident),*) => {$(
            if old.$key != new.$key {
                needs_restart.push(format!("server {}", stringify!($key)));
                new.$key = old.$key.clone();
            }
        )*};
    }
    keep!(
        listen,
        data_dir,
        monitor_interval,
        fsync,
        index_entries,
        scanner_idle_ttl,
        log_level
    );
    // Connection limits, origins, hosts and the TLS files are the listener's: the
    // certificates' content is re-read on reload, the rest takes a restart.
    if old.server != new.server {
        needs_restart.push(
            "server connection limits, idle_spin, allowed_origins, allowed_hosts or TLS files"
                .into(),
        );
        new.server = old.server.clone();
    }
    // The console's hosts are the listener's too; `enabled` goes with them.
    if old.console != new.console {
        needs_restart.push("[console] enabled or hosts".into());
        new.console = old.console.clone();
    }
    if old.engine != new.engine {
        needs_restart.push("[engine]".into());
        new.engine = old.engine.clone();
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start-only keys keep their running values and are listed; the rest
    /// of the new config comes through.
    #[test]
    fn start_only_keys_are_kept_and_listed() {
        let old = Config::default();
        let mut new = Config {
            listen: "127.0.0.1:1".into(),
            max_body: 1,
            ..Config::default()
        };
        new.data_dir.push("elsewhere");
        let mut needs = Vec::new();
        let kept = keep_start_only(&old, new, &mut needs);
        assert_eq!(needs, ["server listen", "server data_dir"]);
        assert_eq!((kept.listen, kept.data_dir), (old.listen, old.data_dir));
        assert_eq!(kept.max_body, 1);
    }

    /// The console's settings and the allowed hosts take a restart, listed.
    #[test]
    fn console_and_hosts_are_kept_and_listed() {
        let old = Config::default();
        let mut new = Config::default();
        new.console.enabled = false;
        new.server.allowed_hosts = vec!["broker.example".into()];
        let mut needs = Vec::new();
        let kept = keep_start_only(&old, new, &mut needs);
        assert_eq!(
            needs,
            [
                "server connection limits, idle_spin, allowed_origins, allowed_hosts or TLS files",
                "[console] enabled or hosts"
            ]
        );
        assert_eq!((kept.console, kept.server), (old.console, old.server));
    }
}
