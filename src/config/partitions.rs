//! `kafka_partitions`: how many partitions each aggregate's topic is created with, written
//! `order=16,product=12,*=4` (`*` is every aggregate not named).

/// Most partitions one topic may be created with.
const MAX_PARTITIONS: i32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    named: Vec<(String, i32)>,
    others: i32,
}

impl TopicPartitions {
    /// Parses the setting; `*` is required, so every aggregate has a number.
    pub fn parse(text: &str) -> Result<TopicPartitions, &'static str> {
        const SHAPE: &str = "must be aggregate=partitions[,…] with *=partitions, each 1..=1024";
        let mut named = Vec::new();
        let mut others = None;
        for entry in text.split(',') {
            let (name, count) = entry.trim().split_once('=').ok_or(SHAPE)?;
            let count: i32 = count.trim().parse().map_err(|_| SHAPE)?;
            let name = name.trim();
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*'));
            if !(1..=MAX_PARTITIONS).contains(&count) || !name_ok {
                return Err(SHAPE);
            }
            if name == "*" {
                others = Some(count);
            } else {
                named.push((name.to_owned(), count));
            }
        }
        Ok(TopicPartitions {
            named,
            others: others.ok_or(SHAPE)?,
        })
    }

    /// The aggregates named, with their partitions.
    pub fn named(&self) -> &[(String, i32)] {
        &self.named
    }

    /// The partitions of every aggregate not named.
    pub fn others(&self) -> i32 {
        self.others
    }

    /// The partitions of the topic of `aggregate_type`.
    pub fn of(&self, aggregate_type: &str) -> i32 {
        self.named
            .iter()
            .find(|(name, _)| name == aggregate_type)
            .map_or(self.others, |(_, count)| *count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_aggregates_take_their_number_and_the_rest_the_star() {
        let p = TopicPartitions::parse("order=16, product=12,*=4").unwrap();
        assert_eq!(p.of("order"), 16);
        assert_eq!(p.of("product"), 12);
        assert_eq!(p.of("waitlist"), 4);
    }

    #[test]
    fn malformed_settings_are_refused() {
        for bad in [
            "",
            "order=16",
            "order=0,*=4",
            "order=x,*=4",
            "=3,*=4",
            "*=2000",
            "a b=1,*=1",
        ] {
            assert!(TopicPartitions::parse(bad).is_err(), "{bad:?}");
        }
    }
}
