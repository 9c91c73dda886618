//! A page of a listing, as every paged endpoint answers it.

use crate::store;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub size: i64,
    pub total: i64,
}

impl<R, T: From<R>> From<store::Page<R>> for PageView<T> {
    fn from(p: store::Page<R>) -> Self {
        PageView {
            items: p.items.into_iter().map(T::from).collect(),
            page: p.page,
            size: p.size,
            total: p.total,
        }
    }
}
