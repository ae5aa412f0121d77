//! SQL functions for investigations: `zone_of(ip)` places an address in the configured zones,
//! `ip_in_cidr(ip, cidr)` tests membership in a network.
//!
//! Both take any string type (the archive's strings are read as `Utf8View`) and return NULL
//! for a NULL or unparsable address, as SQL functions do; a malformed CIDR is an error that
//! names it, since it is a typo in the query rather than in the data.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use ipnet::IpNet;

use crate::config::Config;
use crate::zones::parse_ip;

/// The functions to register, with the zones of `config`.
pub fn functions(config: Arc<Config>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(ZoneOf {
            config,
            signature: Signature::string(1, Volatility::Immutable),
        }),
        ScalarUDF::from(IpInCidr {
            signature: Signature::string(2, Volatility::Immutable),
        }),
    ]
}

fn strings(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = value.to_array(rows)?;
    Ok(cast(&array, &DataType::Utf8)?)
}

#[derive(Debug)]
struct ZoneOf {
    config: Arc<Config>,
    signature: Signature,
}

// One instance per context; equal when they share a configuration.
impl PartialEq for ZoneOf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for ZoneOf {}

impl Hash for ZoneOf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.config).hash(state);
    }
}

impl ScalarUDFImpl for ZoneOf {
    fn name(&self) -> &str {
        "zone_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [ip] = args.args.as_slice() else {
            return exec_err!("zone_of takes one argument, an IP address");
        };
        let ips = strings(ip, args.number_rows)?;
        let ips = ips.as_string::<i32>();
        let zones = &self.config.zones;
        let mut out = StringBuilder::with_capacity(ips.len(), ips.len() * 8);
        for i in 0..ips.len() {
            match (ips.is_valid(i)).then(|| parse_ip(ips.value(i))).flatten() {
                Some(ip) => out.append_value(zones.name(zones.classify(Some(ip), None))),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IpInCidr {
    signature: Signature,
}

impl ScalarUDFImpl for IpInCidr {
    fn name(&self) -> &str {
        "ip_in_cidr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [ip, cidr] = args.args.as_slice() else {
            return exec_err!("ip_in_cidr takes two arguments: an IP address and a CIDR");
        };
        let parse = |text: &str| -> Result<IpNet> {
            text.trim()
                .parse::<IpNet>()
                .or_else(|_| text.trim().parse::<IpAddr>().map(IpNet::from))
                .or_else(|_| exec_err!("ip_in_cidr: {text:?} is not a CIDR (like 10.0.0.0/8)"))
        };
        // The usual call has a literal network: parse it once.
        let constant = match cidr {
            ColumnarValue::Scalar(scalar) => Some(match scalar_string(scalar) {
                Some(text) => Some(parse(&text)?),
                None => None,
            }),
            ColumnarValue::Array(_) => None,
        };
        let ips = strings(ip, args.number_rows)?;
        let ips = ips.as_string::<i32>();
        let cidrs = match constant {
            Some(_) => None,
            None => Some(strings(cidr, args.number_rows)?),
        };
        let cidrs = cidrs.as_ref().map(|c| c.as_string::<i32>());
        let mut out = BooleanBuilder::with_capacity(ips.len());
        for i in 0..ips.len() {
            let network = match (&constant, cidrs) {
                (Some(network), _) => *network,
                (None, Some(cidrs)) if cidrs.is_valid(i) => Some(parse(cidrs.value(i))?),
                _ => None,
            };
            let ip = ips.is_valid(i).then(|| parse_ip(ips.value(i))).flatten();
            match (ip, network) {
                (Some(ip), Some(network)) => out.append_value(network.contains(&ip)),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn scalar_string(scalar: &ScalarValue) -> Option<String> {
    match scalar {
        ScalarValue::Utf8(text) | ScalarValue::Utf8View(text) | ScalarValue::LargeUtf8(text) => {
            text.clone()
        }
        _ => None,
    }
}
