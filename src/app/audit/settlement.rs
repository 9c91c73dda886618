//! The checks of settlement: every statement is the sum of its lines (gross, commission,
//! net, line count: the entries of its period, so an entry written into a period after its
//! statement shows here), no partner order is settled twice, no entry sits in a settled
//! day without its partner's statement, and the books hold exactly one sale entry per
//! confirmed purchase, with its own amounts. The keys forbid some of this already; verify
//! proves all of it from the rows, as it does every balance.

use crate::store::SettlementAudit;

pub(super) fn check(audit: &SettlementAudit, problems: &mut Vec<String>) {
    for m in &audit.mismatches {
        let (gross, commission, net, lines) = m.stated;
        let (line_gross, line_commission, line_net, line_lines) = m.summed;
        problems.push(format!(
            "settlement {}: states gross {gross}, commission {commission}, net {net} over \
             {lines} lines, its lines sum to {line_gross}, {line_commission}, {line_net} over \
             {line_lines}",
            m.settlement_id
        ));
    }
    for partner_order_id in &audit.settled_twice {
        problems.push(format!(
            "partner order {partner_order_id} is settled on more than one statement"
        ));
    }
    for entry_id in &audit.unsettled_entries {
        problems.push(format!(
            "settlement entry {entry_id} is in a settled day but on no statement"
        ));
    }
    for partner_order_id in &audit.sale_entry_mismatches {
        problems.push(format!(
            "partner order {partner_order_id}: its sale entry is missing, disagrees with it, \
             or its purchase was never confirmed"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StatementMismatch;

    #[test]
    fn statements_must_be_the_sums_of_their_lines() {
        let mut problems = Vec::new();
        check(&SettlementAudit::default(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let broken = SettlementAudit {
            mismatches: vec![StatementMismatch {
                settlement_id: 4,
                stated: (2_010, 202, 1_808, 2),
                summed: (1_005, 101, 904, 1),
            }],
            settled_twice: vec![9],
            unsettled_entries: vec![12],
            sale_entry_mismatches: vec![7],
        };
        check(&broken, &mut problems);
        assert_eq!(
            problems,
            [
                "settlement 4: states gross 2010, commission 202, net 1808 over 2 lines, its \
                 lines sum to 1005, 101, 904 over 1",
                "partner order 9 is settled on more than one statement",
                "settlement entry 12 is in a settled day but on no statement",
                "partner order 7: its sale entry is missing, disagrees with it, or its \
                 purchase was never confirmed",
            ]
        );
    }
}
