//! What became of one attempt, and its encoding in the 16 bits of a runner slot. A leaf:
//! the runner records outcomes, the progress line counts them, the analysis reads them.

/// Why an attempt got no HTTP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    Timeout,
    Connect,
    /// Open loop only: due while `concurrency` requests were already in flight.
    Dropped,
    Transport,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Dropped => "dropped",
            ErrorKind::Transport => "transport",
        }
    }

    pub(crate) fn of(e: &reqwest::Error) -> ErrorKind {
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_connect() {
            ErrorKind::Connect
        } else {
            ErrorKind::Transport
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Never ran (only possible if the run was cut short).
    Pending,
    Ok,
    /// An HTTP answer that is not a success; the index of its code in the run's code table
    /// (the runner's `Recording::codes`).
    Rejected(u16),
    Failed(ErrorKind),
}

const REJECTED_BASE: u16 = 16;

impl Outcome {
    pub(crate) fn encode(self) -> u16 {
        match self {
            Outcome::Pending => 0,
            Outcome::Ok => 1,
            Outcome::Failed(kind) => 2 + kind as u16,
            Outcome::Rejected(code) => REJECTED_BASE + code,
        }
    }

    pub(crate) fn decode(raw: u16) -> Outcome {
        match raw {
            0 => Outcome::Pending,
            1 => Outcome::Ok,
            2 => Outcome::Failed(ErrorKind::Timeout),
            3 => Outcome::Failed(ErrorKind::Connect),
            4 => Outcome::Failed(ErrorKind::Dropped),
            5..REJECTED_BASE => Outcome::Failed(ErrorKind::Transport),
            code => Outcome::Rejected(code - REJECTED_BASE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_survive_encoding() {
        let all = [
            Outcome::Pending,
            Outcome::Ok,
            Outcome::Failed(ErrorKind::Timeout),
            Outcome::Failed(ErrorKind::Connect),
            Outcome::Failed(ErrorKind::Dropped),
            Outcome::Failed(ErrorKind::Transport),
            Outcome::Rejected(0),
            Outcome::Rejected(300),
        ];
        for outcome in all {
            assert_eq!(Outcome::decode(outcome.encode()), outcome);
        }
    }
}
