//! alerts.log: one JSON object per conn record that a model flagged — the
//! record exactly as conn.log's JSON form has it (so every tool that reads
//! Zeek JSON reads it), plus an `osprey` member with the verdicts.
//!
//! An open connection is scored again at every interim snapshot; a long
//! session a model keeps flagging would repeat the same alert every time
//! (one FTP control connection of a Zeek test trace: 110 lines), and the
//! platform pays for every line. So an interim snapshot is written only
//! when its flagged (model, label) pairs differ from the last alert written
//! for its connection, as an IDS alerts once per flow and signature; the
//! final record is always written when flagged.

use std::hash::{Hash, Hasher};
use std::io::{self, Write};

use hashbrown::HashMap;
use serde::Serialize;

use crate::conn::{ConnRecord, Uid};
use crate::identity::ConnIdentity;
use crate::model::{Model, Verdict};
use crate::report::{ConnLogWriter, ExtraColumns, LogFormat};

#[derive(Serialize)]
struct VerdictOut<'a> {
    model: &'a str,
    version: &'a str,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

#[derive(Serialize)]
struct OspreyMember<'a> {
    /// Final records only in a replay; the live daemon also scores open
    /// connections (interim records).
    interim: bool,
    verdicts: Vec<VerdictOut<'a>>,
    /// Who the endpoints are, when the sensor runs in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a ConnIdentity>,
}

/// Open connections whose last alert is remembered at most: beyond, the
/// memory is dropped and their next snapshot alerts again (8 bytes of
/// signature and 16 of uid each, ~4 MB at the cap).
const MAX_REMEMBERED: usize = 100_000;

pub struct AlertWriter<W: Write> {
    out: W,
    json: ConnLogWriter<io::Sink>,
    written: u64,
    /// Interim snapshots not written: their connection's last alert had
    /// the same flagged labels.
    repeats: u64,
    /// Per open connection, a hash of the flagged (model, label) pairs of
    /// its last alert.
    last: HashMap<Uid, u64>,
}

/// What an alert says: which models flagged it, with which labels.
fn signature(models: &[Model], verdicts: &[Verdict]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for (m, v) in models.iter().zip(verdicts) {
        if v.flagged {
            m.spec().model.name.hash(&mut h);
            v.label_name().hash(&mut h);
        }
    }
    h.finish()
}

impl<W: Write> AlertWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        Ok(AlertWriter {
            out,
            json: ConnLogWriter::new(io::sink(), LogFormat::Json, ExtraColumns::default())?,
            written: 0,
            repeats: 0,
            last: HashMap::new(),
        })
    }

    /// Writes the record when any verdict is flagged (an interim snapshot
    /// only when it says something new about its connection, see the
    /// module documentation); every model's verdict goes with it, so a
    /// reader sees what the others thought too.
    pub fn write(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
    ) -> io::Result<bool> {
        self.write_with(record, models, verdicts, interim, None)
    }

    /// As [`AlertWriter::write`], with the endpoints' pod identity in the
    /// `osprey` member (`"identity":{"orig":{..},"resp":{..}}`).
    pub fn write_with(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
        identity: Option<&ConnIdentity>,
    ) -> io::Result<bool> {
        let flagged = verdicts.iter().any(|v| v.flagged);
        if !interim {
            self.last.remove(&record.uid);
        }
        if !flagged {
            return Ok(false);
        }
        if interim {
            let sig = signature(models, verdicts);
            if self.last.get(&record.uid) == Some(&sig) {
                self.repeats += 1;
                return Ok(false);
            }
            if self.last.len() >= MAX_REMEMBERED {
                self.last.clear();
            }
            self.last.insert(record.uid, sig);
        }
        let member = OspreyMember {
            interim,
            verdicts: models
                .iter()
                .zip(verdicts)
                .map(|(m, v)| VerdictOut {
                    model: &m.spec().model.name,
                    version: &m.spec().model.version,
                    verdict: v,
                })
                .collect(),
            identity,
        };
        let tail = serde_json::to_string(&member).map_err(io::Error::other)?;
        let head = self.json.json_members(record);
        self.out.write_all(head.as_bytes())?;
        self.out.write_all(b",\"osprey\":")?;
        self.out.write_all(tail.as_bytes())?;
        self.out.write_all(b"}\n")?;
        self.written += 1;
        Ok(true)
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Interim snapshots left out as repeats of their connection's last
    /// alert.
    pub fn repeats(&self) -> u64 {
        self.repeats
    }

    /// The sink, for a caller that measures what went into it.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The sink, for a caller that post-processes each line (the stdout
    /// stream tags it).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes the sink so that a reader tailing alerts.log sees every
    /// alert written so far.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnState;
    use crate::evidence::fixtures::tcp;
    use crate::features::FeatureSpec;

    fn classifier() -> Model {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osprey-classifier.toml");
        Model::load(FeatureSpec::load(&path).expect("spec")).expect("model")
    }

    fn verdict(label: &str, flagged: bool) -> Verdict {
        Verdict {
            label: Some(label.into()),
            class: None,
            probability: Some(0.9),
            score: Some(0.9),
            flagged,
        }
    }

    /// A long connection flagged at every snapshot is one alert until what
    /// the models say about it changes; its final record always alerts.
    #[test]
    fn snapshots_repeating_the_last_alert_of_their_connection_are_left_out() {
        let models = [classifier()];
        let mut w = AlertWriter::new(Vec::new()).expect("writer");
        let mut r = tcp(
            1,
            ("198.18.0.9", 40000),
            ("198.18.0.1", 21),
            ConnState::SF,
            1.0,
        );
        let brute = [verdict("http_bruteforce", true)];
        let written: Vec<bool> = [
            (&brute, true),
            (&brute, true),
            (&[verdict("benign", false)], true),
            (&brute, true),
            (&[verdict("slowloris", true)], true),
            (&[verdict("slowloris", true)], false),
        ]
        .iter()
        .map(|(v, interim)| {
            r.interim = *interim;
            w.write(&r, &models, *v, *interim).expect("write")
        })
        .collect();
        assert_eq!(written, [true, false, false, false, true, true]);
        assert_eq!((w.written(), w.repeats()), (3, 2));
        // A new connection, or the same one after its final record, starts over.
        r.interim = true;
        assert!(w.write(&r, &models, &brute, true).expect("write"));
        let lines = String::from_utf8(w.finish().expect("finish")).expect("utf-8");
        assert_eq!(lines.lines().count(), 4);
    }
}
