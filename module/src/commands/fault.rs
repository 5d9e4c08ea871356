//! The handler of `RC.FAULT SET <json> | GET` (as `rcluster_domain::rc::fault` defines it): the
//! node process replaces the faults its module enforces, or reads them back.

use rcluster_domain::rc::fault::FaultCmd;
use redis_module::{Context, RedisString, RedisValue};

use crate::faults;
use crate::guard::Outcome;

pub fn fault(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    match FaultCmd::parse(&args)? {
        FaultCmd::Set(held) => Ok(RedisValue::Integer(
            i64::try_from(faults::set(held)).unwrap_or(i64::MAX),
        )),
        FaultCmd::Get => Ok(RedisValue::StringBuffer(FaultCmd::json(&faults::held()))),
    }
}
