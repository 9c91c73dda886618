//! Who is asking: the signed-in account a use case acts for. Built from a verified access
//! token at the edge; the use cases decide with it what the caller may see and change.

use super::order::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: i64,
    pub role: Role,
    /// The partner a seller belongs to; `None` for buyers and admins.
    pub partner_id: Option<i64>,
}

impl Actor {
    /// The operator at the command line (`stampede dlq …`): whoever can run the binary
    /// with the database's credentials already holds everything an admin could, so the
    /// commands act as an admin that is no account (id 0 is never a user's).
    pub const OPERATOR: Actor = Actor {
        id: 0,
        role: Role::Admin,
        partner_id: None,
    };

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admins manage every partner; a seller only its own.
    pub fn may_manage_partner(&self, partner_id: i64) -> bool {
        self.is_admin() || (self.role == Role::Seller && self.partner_id == Some(partner_id))
    }

    /// Whether the caller may see what belongs to `owner`: the owner, or an admin.
    pub fn may_see(&self, owner: i64) -> bool {
        self.id == owner || self.is_admin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role, partner_id: Option<i64>) -> Actor {
        Actor {
            id: 7,
            role,
            partner_id,
        }
    }

    #[test]
    fn sellers_manage_only_their_partner_and_admins_every_one() {
        assert!(actor(Role::Seller, Some(3)).may_manage_partner(3));
        assert!(!actor(Role::Seller, Some(3)).may_manage_partner(4));
        assert!(!actor(Role::Buyer, None).may_manage_partner(3));
        assert!(actor(Role::Admin, None).may_manage_partner(4));
    }

    #[test]
    fn owners_and_admins_see_a_resource() {
        assert!(actor(Role::Buyer, None).may_see(7));
        assert!(!actor(Role::Buyer, None).may_see(8));
        assert!(actor(Role::Admin, None).may_see(8));
    }
}
