//! alerts.log: one JSON object per conn record that a model flagged — the
//! record exactly as conn.log's JSON form has it (so every tool that reads
//! Zeek JSON reads it), plus an `osprey` member with the verdicts.

use std::io::{self, Write};

use serde::Serialize;

use crate::conn::ConnRecord;
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
}

pub struct AlertWriter<W: Write> {
    out: W,
    json: ConnLogWriter<io::Sink>,
    written: u64,
}

impl<W: Write> AlertWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        Ok(AlertWriter {
            out,
            json: ConnLogWriter::new(io::sink(), LogFormat::Json, ExtraColumns::default())?,
            written: 0,
        })
    }

    /// Writes the record when any verdict is flagged; every model's verdict
    /// goes with it, so a reader sees what the others thought too.
    pub fn write(
        &mut self,
        record: &ConnRecord,
        models: &[Model],
        verdicts: &[Verdict],
        interim: bool,
    ) -> io::Result<bool> {
        if !verdicts.iter().any(|v| v.flagged) {
            return Ok(false);
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
