//! What `stampede verify` found.

#[derive(Debug, Default)]
pub struct Report {
    pub products: usize,
    pub orders: usize,
    pub campaigns: usize,
    /// One line per difference; none when the books balance.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}
