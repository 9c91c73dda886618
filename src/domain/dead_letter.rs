//! A dead letter's life: `open` when a consumer gave up on a message, then `replayed` once
//! it was processed (by an operator's replay or the retry job), or `discarded` by an
//! operator. Only an open letter moves.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    Open,
    Replayed,
    Discarded,
}

impl DeadLetterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Discarded => "discarded",
        }
    }

    pub fn parse(raw: &str) -> Option<DeadLetterStatus> {
        match raw {
            "open" => Some(DeadLetterStatus::Open),
            "replayed" => Some(DeadLetterStatus::Replayed),
            "discarded" => Some(DeadLetterStatus::Discarded),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_written() {
        for status in [
            DeadLetterStatus::Open,
            DeadLetterStatus::Replayed,
            DeadLetterStatus::Discarded,
        ] {
            assert_eq!(DeadLetterStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeadLetterStatus::parse("lost"), None);
    }
}
