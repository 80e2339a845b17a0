//! Placing an order: the request as the client sends it, its validation (every error names
//! its field), and pricing against the catalog (the order service owns prices; the total is
//! computed here once and snapshotted into the order and into OrderPlaced).

use std::collections::{HashMap, HashSet};

use saga_contracts::ids::{CustomerId, Sku};
use saga_contracts::{Address, Money, OrderLine};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 1000;
const MAX_TEXT: usize = 200;

/// Body of `POST /orders`. Fields are optional at the serde level so that a missing field
/// becomes a named validation error instead of an opaque parse failure; the document says
/// they are required, because they are.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// 1-128 characters (surrounding white space is trimmed), no control characters.
    #[schema(
        example = "customer-42",
        required = true,
        nullable = false,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub customer_id: Option<String>,
    /// Each SKU at most once; every SKU must be in the catalog, all in one currency.
    #[schema(required = true, nullable = false, min_items = 1, max_items = 100)]
    pub items: Option<Vec<ItemRequest>>,
    #[schema(required = true, nullable = false)]
    pub shipping_address: Option<AddressRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    #[schema(
        example = "SKU-1",
        required = true,
        nullable = false,
        pattern = r"^[A-Za-z0-9._-]{1,64}$"
    )]
    pub sku: Option<String>,
    #[schema(
        example = 2,
        minimum = 1,
        maximum = 1000,
        required = true,
        nullable = false
    )]
    #[serde(
        default,
        deserialize_with = "saga_service_kit::openapi::integer::option::deserialize"
    )]
    pub quantity: Option<i64>,
}

/// Every text is trimmed and must keep 1 to 200 characters (line2: at most 200, optional).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[schema(required = true, nullable = false, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(required = true, nullable = false, max_length = 200, pattern = r"\S")]
    pub line1: Option<String>,
    #[schema(max_length = 200)]
    pub line2: Option<String>,
    #[schema(required = true, nullable = false, max_length = 200, pattern = r"\S")]
    pub city: Option<String>,
    #[schema(required = true, nullable = false, max_length = 200, pattern = r"\S")]
    pub postal_code: Option<String>,
    /// An assigned ISO 3166-1 alpha-2 code, upper case.
    #[schema(
        example = "DE",
        required = true,
        nullable = false,
        pattern = r"^\s*[A-Z]{2}\s*$"
    )]
    pub country: Option<String>,
}

/// One validation failure, named by a JSON path into the request (`items[2].quantity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A request that passed the checks that need no database.
#[derive(Debug, Clone)]
pub struct ValidOrder {
    pub customer_id: CustomerId,
    pub items: Vec<(Sku, i32)>,
    pub shipping_address: Address,
}

impl PlaceOrderRequest {
    pub fn validate(&self) -> Result<ValidOrder, Vec<FieldError>> {
        let mut errors = Vec::new();

        let customer_id = match self.customer_id.as_deref().map(str::trim) {
            None | Some("") => {
                errors.push(FieldError::new("customer_id", "is required"));
                None
            }
            Some(raw) => match raw.parse::<CustomerId>() {
                Ok(id) => Some(id),
                Err(e) => {
                    errors.push(FieldError::new("customer_id", e.to_string()));
                    None
                }
            },
        };

        let mut items = Vec::new();
        match &self.items {
            None => errors.push(FieldError::new("items", "is required")),
            Some(list) if list.is_empty() => {
                errors.push(FieldError::new("items", "must contain at least one item"))
            }
            Some(list) if list.len() > MAX_LINES => errors.push(FieldError::new(
                "items",
                format!("must contain at most {MAX_LINES} items"),
            )),
            Some(list) => {
                let mut seen = HashSet::new();
                for (i, item) in list.iter().enumerate() {
                    let sku = match item.sku.as_deref() {
                        None | Some("") => {
                            errors.push(FieldError::new(format!("items[{i}].sku"), "is required"));
                            None
                        }
                        Some(raw) => match raw.parse::<Sku>() {
                            Ok(sku) if !seen.insert(sku.to_string()) => {
                                errors.push(FieldError::new(
                                    format!("items[{i}].sku"),
                                    "appears more than once; combine the quantities",
                                ));
                                None
                            }
                            Ok(sku) => Some(sku),
                            Err(e) => {
                                errors.push(FieldError::new(
                                    format!("items[{i}].sku"),
                                    e.to_string(),
                                ));
                                None
                            }
                        },
                    };
                    let quantity = match item.quantity {
                        None => {
                            errors.push(FieldError::new(
                                format!("items[{i}].quantity"),
                                "is required",
                            ));
                            None
                        }
                        Some(q) if !(1..=MAX_QUANTITY).contains(&q) => {
                            errors.push(FieldError::new(
                                format!("items[{i}].quantity"),
                                format!("must be between 1 and {MAX_QUANTITY}"),
                            ));
                            None
                        }
                        // In range, so it fits an i32.
                        Some(q) => Some(q as i32),
                    };
                    if let (Some(sku), Some(quantity)) = (sku, quantity) {
                        items.push((sku, quantity));
                    }
                }
            }
        }

        let shipping_address = match &self.shipping_address {
            None => {
                errors.push(FieldError::new("shipping_address", "is required"));
                None
            }
            Some(addr) => addr.validate(&mut errors),
        };

        match (customer_id, shipping_address) {
            (Some(customer_id), Some(shipping_address)) if errors.is_empty() => Ok(ValidOrder {
                customer_id,
                items,
                shipping_address,
            }),
            _ => Err(errors),
        }
    }
}

impl AddressRequest {
    fn validate(&self, errors: &mut Vec<FieldError>) -> Option<Address> {
        let before = errors.len();
        let mut required = |name: &str, value: &Option<String>| -> String {
            let field = format!("shipping_address.{name}");
            match value.as_deref().map(str::trim) {
                None | Some("") => {
                    errors.push(FieldError::new(field, "is required"));
                    String::new()
                }
                Some(v) if v.chars().count() > MAX_TEXT => {
                    errors.push(FieldError::new(
                        field,
                        format!("must be at most {MAX_TEXT} characters"),
                    ));
                    String::new()
                }
                Some(v) => v.to_owned(),
            }
        };
        let name = required("name", &self.name);
        let line1 = required("line1", &self.line1);
        let city = required("city", &self.city);
        let postal_code = required("postal_code", &self.postal_code);
        let country = required("country", &self.country);
        let line2 = self
            .line2
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if line2.as_ref().is_some_and(|l| l.chars().count() > MAX_TEXT) {
            errors.push(FieldError::new(
                "shipping_address.line2",
                format!("must be at most {MAX_TEXT} characters"),
            ));
        }
        if !country.is_empty() && !is_iso_3166_alpha2(&country) {
            errors.push(FieldError::new(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 country code in upper case, e.g. DE",
            ));
        }
        (errors.len() == before).then_some(Address {
            name,
            line1,
            line2,
            city,
            postal_code,
            country,
        })
    }
}

/// The unit prices of the catalog for the SKUs of one order.
pub type PriceList = HashMap<String, Money>;

/// Price a validated order: every SKU must be in the catalog, all in one currency; the
/// total is sum(quantity * unit_price) with overflow checked.
pub fn price(
    order: &ValidOrder,
    prices: &PriceList,
) -> Result<(Vec<OrderLine>, Money), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(order.items.len());
    for (i, (sku, quantity)) in order.items.iter().enumerate() {
        match prices.get(sku.as_ref()) {
            None => errors.push(FieldError::new(
                format!("items[{i}].sku"),
                format!("unknown SKU {sku}: not in the catalog"),
            )),
            Some(unit_price) => lines.push(OrderLine {
                sku: sku.clone(),
                quantity: *quantity,
                unit_price: *unit_price,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let currency = lines[0].unit_price.currency;
    if lines.iter().any(|l| l.unit_price.currency != currency) {
        return Err(vec![FieldError::new(
            "items",
            "the items are priced in different currencies; place one order per currency",
        )]);
    }
    let total = lines
        .iter()
        .try_fold(0i64, |acc, l| {
            l.unit_price
                .amount_minor
                .checked_mul(i64::from(l.quantity))
                .and_then(|line_total| acc.checked_add(line_total))
        })
        .ok_or_else(|| vec![FieldError::new("items", "the order total is too large")])?;
    Ok((
        lines,
        Money {
            amount_minor: total,
            currency,
        },
    ))
}

/// ISO 3166-1 alpha-2 officially assigned codes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub fn is_iso_3166_alpha2(code: &str) -> bool {
    code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_list_has_every_assigned_code_once() {
        let codes: Vec<&str> = ISO_3166_ALPHA2.split(' ').collect();
        assert_eq!(codes.len(), 249);
        assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 249);
        assert!(is_iso_3166_alpha2("DE"));
        assert!(!is_iso_3166_alpha2("de"));
        assert!(!is_iso_3166_alpha2("XX"));
        assert!(!is_iso_3166_alpha2("DEU"));
    }
}
