//! What the reporter sends: events (alerts and actions) and heartbeats.
//! docs/platform-api.yaml specifies the same shapes for the platform side.

use std::io;

use serde::{Deserialize, Serialize};

use crate::conn::ConnRecord;
use crate::identity::ConnIdentity;
use crate::model::{Model, Verdict};
use crate::report::{ConnLogWriter, ExtraColumns, LogFormat};
use crate::respond::control::LiftBody;
use crate::respond::Action;

/// One thing the platform should know about. Spooled and sent as JSON:
/// `{"key":..,"ts":..,"node":..,"kind":"alert"|"action","body":{..}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key: the receiver keeps the first event with a key and
    /// acknowledges (without storing) any later one, because delivery is
    /// at-least-once.
    pub key: String,
    /// When it happened, seconds since the Unix epoch.
    pub ts: f64,
    /// The node (Kubernetes node name) whose sensor saw it.
    pub node: String,
    #[serde(flatten)]
    pub body: EventBody,
}

/// The event's payload, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum EventBody {
    /// A record some model flagged.
    Alert(AlertBody),
    /// A decision of the responder (which may itself be an `alert` action);
    /// boxed because it is several times the size of an alert's fields.
    Action(Box<Action>),
    /// An operator lifted decisions (`osprey decisions delete`).
    Lift(Box<LiftBody>),
}

impl EventBody {
    /// The kind's name as in the payload and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Alert(_) => "alert",
            EventBody::Action(_) => "action",
            EventBody::Lift(_) => "lift",
        }
    }
}

/// A flagged connection record and every model's verdict on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertBody {
    /// The connection's Zeek uid (also inside `conn`), for correlating
    /// with conn.log and with actions' evidence.
    pub uid: String,
    /// An interim snapshot of a connection still open, not its final record.
    pub interim: bool,
    /// The record exactly as conn.log's JSON form has it, so the platform
    /// parses it with whatever already reads Zeek JSON.
    pub conn: serde_json::Value,
    pub verdicts: Vec<VerdictSummary>,
    /// Who the endpoints are (`{"orig":{"kind":"pod",..},"resp":{..}}`),
    /// when the sensor runs in a cluster with pod identity on. Boxed: it
    /// is several times the size of the other fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Box<ConnIdentity>>,
}

/// One model's opinion on a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictSummary {
    pub model: String,
    pub version: String,
    pub flagged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
}

impl AlertBody {
    /// The alert for a record as alerts.log writes it: the conn.log JSON
    /// object plus every model's verdict (`models` and `verdicts` pair up).
    pub fn from_record(
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
    ) -> io::Result<AlertBody> {
        let mut json = ConnLogWriter::new(io::sink(), LogFormat::Json, ExtraColumns::default())?;
        let mut text = json.json_members(record).to_owned();
        text.push('}');
        let conn: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
        Ok(AlertBody {
            uid: record.uid.to_string(),
            interim,
            conn,
            verdicts: models
                .iter()
                .zip(verdicts)
                .map(|(m, v)| VerdictSummary {
                    model: m.spec().model.name.clone(),
                    version: m.spec().model.version.clone(),
                    flagged: v.flagged,
                    label: v.label.clone(),
                    score: v.score,
                    probability: v.probability,
                })
                .collect(),
            identity: None,
        })
    }
}

impl Event {
    /// An action event; its key is the action's own idempotency id.
    pub fn action(node: &str, action: &Action) -> Event {
        Event {
            key: action.id.clone(),
            ts: action.ts,
            node: node.to_owned(),
            body: EventBody::Action(Box::new(action.clone())),
        }
    }

    /// An alert event decided at `ts`. The key names the node, the
    /// connection, whether it was interim and the time, so a later
    /// snapshot of the same connection is a new alert but a resent one
    /// is not.
    pub fn alert(node: &str, ts: f64, body: AlertBody) -> Event {
        let phase = if body.interim { "i" } else { "f" };
        let micros = (ts * 1e6).round() as i64;
        Event {
            key: format!("alert:{node}:{}:{phase}:{micros}", body.uid),
            ts,
            node: node.to_owned(),
            body: EventBody::Alert(body),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }

    /// A lift at `ts`; one per request (the time tells two apart).
    pub fn lift(node: &str, ts: f64, body: LiftBody) -> Event {
        let micros = (ts * 1e6).round() as i64;
        Event {
            key: format!("lift:{node}:{}:{micros}", body.target),
            ts,
            node: node.to_owned(),
            body: EventBody::Lift(Box::new(body)),
        }
    }
}

/// A model the sensor runs, as the heartbeat lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

/// The heartbeat's body: who is alive, with what, and how delivery fares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    /// osprey's version.
    pub version: String,
    /// Identifies this spool; event batches carry it too.
    pub spool_id: String,
    pub ts: f64,
    pub models: Vec<ModelRef>,
    pub health: HeartbeatHealth,
}

/// The sensor's state as the heartbeat reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeartbeatHealth {
    /// Capturing with the models loaded (what /readyz answers).
    pub ready: bool,
    /// Events spooled and not yet acknowledged.
    pub spool_events: u64,
    pub spool_bytes: u64,
    /// Events dropped from a full spool since the sensor started.
    pub spool_dropped_events: u64,
}

/// The `sensor` member of an events batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SensorInfo {
    pub node: String,
    pub version: String,
    pub spool_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_event_shape() {
        let body = AlertBody {
            uid: "C1".into(),
            interim: false,
            conn: serde_json::json!({"uid": "C1"}),
            verdicts: vec![],
            identity: None,
        };
        let e = Event::alert("n1", 2.0, body);
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["kind"], "alert");
        assert_eq!(j["key"], "alert:n1:C1:f:2000000");
        assert_eq!(j["body"]["conn"]["uid"], "C1");
        let back: Event = serde_json::from_value(j).unwrap();
        assert_eq!(back, e);
    }
}
