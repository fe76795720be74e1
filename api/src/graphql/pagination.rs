//! Relay connections for every list: page sizes, opaque cursors, and a connection built from the
//! rows read one past the page (the extra row only says whether there is a next page).

use async_graphql::connection::{Connection, Edge};
use async_graphql::OutputType;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::ApiError;

/// A position in an order, opaque to clients (the hex of a text form).
pub trait Cursor: Sized + Copy {
    fn to_text(&self) -> String;
    fn from_text(text: &str) -> Option<Self>;

    fn encode(&self) -> String {
        hex::encode(self.to_text())
    }

    fn decode(cursor: &str) -> Result<Self, ApiError> {
        hex::decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| Self::from_text(&text))
            .ok_or_else(|| ApiError::bad_input("after", "not a cursor this API returned"))
    }
}

/// Start order: `(start, id)`.
impl Cursor for (DateTime<Utc>, Uuid) {
    fn to_text(&self) -> String {
        format!("{}|{}", self.0.to_rfc3339(), self.1)
    }
    fn from_text(text: &str) -> Option<Self> {
        let (start, id) = text.split_once('|')?;
        let start = DateTime::parse_from_rfc3339(start)
            .ok()?
            .with_timezone(&Utc);
        Some((start, id.parse().ok()?))
    }
}

/// Log order: `(tx_id, global_position)`.
impl Cursor for (i64, i64) {
    fn to_text(&self) -> String {
        format!("{}:{}", self.0, self.1)
    }
    fn from_text(text: &str) -> Option<Self> {
        let (tx, position) = text.split_once(':')?;
        Some((tx.parse().ok()?, position.parse().ok()?))
    }
}

/// How large pages of one list are.
#[derive(Debug, Clone, Copy)]
pub struct PageSizes {
    pub default: usize,
    pub max: usize,
}

pub const WEBINAR_PAGES: PageSizes = PageSizes {
    default: 20,
    max: 100,
};
pub const AUDIT_PAGES: PageSizes = PageSizes {
    default: 100,
    max: 500,
};

/// What a connection field costs against `max_query_complexity`: each of the `first` rows costs
/// what its selection does, so asking for 500 rows of 20 fields costs 10,000, not 20.
pub fn page_cost(first: Option<i32>, sizes: PageSizes, child_complexity: usize) -> usize {
    let rows = first.map_or(sizes.default, |n| {
        usize::try_from(n).unwrap_or(0).min(sizes.max)
    });
    1usize.saturating_add(rows.max(1).saturating_mul(child_complexity))
}

/// A page asked for: `first` rows after the cursor `after`.
#[derive(Debug, Clone, Copy)]
pub struct Page<C> {
    pub size: usize,
    pub after: Option<C>,
}

impl<C: Cursor> Page<C> {
    pub fn parse(
        first: Option<i32>,
        after: Option<&str>,
        sizes: PageSizes,
    ) -> Result<Self, ApiError> {
        let size = match first {
            None => sizes.default,
            Some(n) if n >= 0 && n as usize <= sizes.max => n as usize,
            Some(n) => {
                return Err(ApiError::bad_input(
                    "first",
                    format!("must be between 0 and {} (got {n})", sizes.max),
                ))
            }
        };
        let after = after.map(C::decode).transpose()?;
        Ok(Self { size, after })
    }

    /// How many rows to read: one more than the page, to know whether another follows.
    pub fn limit(&self) -> i64 {
        self.size as i64 + 1
    }

    /// The connection of `rows` (read with [`Page::limit`]).
    pub fn connection<R, N: OutputType>(
        &self,
        mut rows: Vec<R>,
        cursor: impl Fn(&R) -> C,
        node: impl Fn(R) -> N,
    ) -> Connection<String, N> {
        let more = rows.len() > self.size;
        rows.truncate(self.size);
        let mut connection = Connection::new(self.after.is_some(), more);
        connection.edges.extend(
            rows.into_iter()
                .map(|row| Edge::new(cursor(&row).encode(), node(row))),
        );
        connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let start = (DateTime::<Utc>::UNIX_EPOCH, Uuid::from_u128(7));
        assert_eq!(
            <(DateTime<Utc>, Uuid)>::decode(&start.encode()).ok(),
            Some(start)
        );
        let log = (12_i64, 34_i64);
        assert_eq!(<(i64, i64)>::decode(&log.encode()).ok(), Some(log));
        assert!(<(i64, i64)>::decode(&start.encode()).is_err());
        assert!(<(i64, i64)>::decode("zz").is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        let page = |first| Page::<(i64, i64)>::parse(first, None, WEBINAR_PAGES).map(|p| p.size);
        assert_eq!(page(None).ok(), Some(20));
        assert_eq!(page(Some(0)).ok(), Some(0));
        assert_eq!(page(Some(100)).ok(), Some(100));
        assert!(page(Some(101)).is_err() && page(Some(-1)).is_err());
    }
}
