//! AFL target: `mcpgw_core::fuzzing::http`, through one gateway for the whole run.
fn main() {
    let gw = std::panic::AssertUnwindSafe(mcpgw_core::fuzzing::http_gateway());
    afl::fuzz!(|data: &[u8]| mcpgw_core::fuzzing::http(&gw, data));
}
