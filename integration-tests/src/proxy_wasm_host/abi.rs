//! The host side of the proxy-wasm ABI 0.2.1, and the few WASI calls Rust's std makes.
//! Any other import the module declares is linked to a stub that answers "unimplemented".

use super::memory::{
    self, deserialize_map, property_key, read, read_string, return_bytes, serialize_map, write, write_u32,
};
use super::state::*;
use std::time::Duration;
use wasmtime::Result;
use wasmtime::{Caller, Linker, Module, Store, Val};

type C<'a> = Caller<'a, VmState>;

const MAP_REQUEST_HEADERS: i32 = 0;
const MAP_REQUEST_TRAILERS: i32 = 1;
const MAP_RESPONSE_HEADERS: i32 = 2;
const MAP_RESPONSE_TRAILERS: i32 = 3;
const MAP_CALL_RESPONSE_HEADERS: i32 = 6;
const MAP_CALL_RESPONSE_TRAILERS: i32 = 7;

const BUFFER_REQUEST_BODY: i32 = 0;
const BUFFER_RESPONSE_BODY: i32 = 1;
const BUFFER_CALL_RESPONSE_BODY: i32 = 4;
const BUFFER_GRPC_RECEIVE: i32 = 5;
const BUFFER_VM_CONFIGURATION: i32 = 6;
const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;

/// The header map a map type names, for the current stream or callout answer.
fn map_mut(state: &mut VmState, map_type: i32) -> Option<&mut Vec<(String, Vec<u8>)>> {
    match map_type {
        MAP_CALL_RESPONSE_HEADERS => state.answer.as_mut().map(|a| &mut a.headers),
        MAP_CALL_RESPONSE_TRAILERS => state.answer.as_mut().map(|a| &mut a.trailers),
        _ => {
            let stream = state.stream()?;
            match map_type {
                MAP_REQUEST_HEADERS => Some(&mut stream.request_headers),
                MAP_REQUEST_TRAILERS => Some(&mut stream.request_trailers),
                MAP_RESPONSE_HEADERS => Some(&mut stream.response_headers),
                MAP_RESPONSE_TRAILERS => Some(&mut stream.response_trailers),
                _ => None,
            }
        }
    }
}

fn buffer_mut(state: &mut VmState, buffer_type: i32) -> Option<&mut Vec<u8>> {
    match buffer_type {
        BUFFER_CALL_RESPONSE_BODY | BUFFER_GRPC_RECEIVE => state.answer.as_mut().map(|a| &mut a.body),
        BUFFER_VM_CONFIGURATION => Some(&mut state.vm_config),
        BUFFER_PLUGIN_CONFIGURATION => Some(&mut state.plugin_config),
        BUFFER_REQUEST_BODY => state.stream().map(|s| &mut s.request_body),
        BUFFER_RESPONSE_BODY => state.stream().map(|s| &mut s.response_body),
        _ => None,
    }
}

/// Returns a value the way every proxy-wasm "get" does, or NOT_FOUND when there is none.
fn return_found(c: &mut C, value: Option<Vec<u8>>, ptr_out: i32, size_out: i32) -> Result<i32> {
    match value {
        Some(value) => {
            return_bytes(c, &value, ptr_out, size_out)?;
            Ok(STATUS_OK)
        }
        None => Ok(STATUS_NOT_FOUND),
    }
}

pub fn link(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_log", |mut c: C, level: i32, ptr: i32, len: i32| -> Result<i32> {
        let message = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
        c.data_mut().logs.push(LogLine { level: level as u32, message });
        Ok(STATUS_OK)
    })?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: C, out: i32| -> Result<i32> {
        write_u32(&mut c, out, 0)?; // trace: the harness records everything
        Ok(STATUS_OK)
    })?;
    linker.func_wrap("env", "proxy_get_current_time_nanoseconds", |mut c: C, out: i32| -> Result<i32> {
        let now = c.data().env.now_nanos();
        write(&mut c, out, &now.to_le_bytes())?;
        Ok(STATUS_OK)
    })?;
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", |mut c: C, period: i32| -> i32 {
        c.data_mut().tick_period = (period > 0).then(|| Duration::from_millis(period as u64));
        STATUS_OK
    })?;
    linker.func_wrap("env", "proxy_set_effective_context", |mut c: C, id: i32| -> i32 {
        let id = id as u32;
        let state = c.data_mut();
        if id == state.root_id || state.streams.contains_key(&id) {
            state.effective = id;
            STATUS_OK
        } else {
            STATUS_BAD_ARGUMENT
        }
    })?;
    linker.func_wrap("env", "proxy_done", |_c: C| -> i32 { STATUS_OK })?;

    link_maps(linker)?;
    link_buffers(linker)?;
    link_properties_and_shared_data(linker)?;
    link_streams_and_callouts(linker)?;
    link_metrics(linker)?;
    link_wasi(linker)
}

fn link_maps(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C, map: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            let Some(pairs) = map_mut(c.data_mut(), map).map(|m| m.clone()) else {
                return Ok(STATUS_NOT_FOUND);
            };
            return_bytes(&mut c, &serialize_map(&pairs), ptr_out, size_out)?;
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap("env", "proxy_set_header_map_pairs", |mut c: C, map: i32, ptr: i32, len: i32| -> Result<i32> {
        let pairs = deserialize_map(&read(&mut c, ptr, len)?)?;
        let Some(target) = map_mut(c.data_mut(), map) else {
            return Ok(STATUS_NOT_FOUND);
        };
        *target = pairs;
        Ok(STATUS_OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C, map: i32, key_ptr: i32, key_len: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let value =
                map_mut(c.data_mut(), map).and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
            return_found(&mut c, value, ptr_out, size_out)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C, map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let value = read(&mut c, value_ptr, value_len)?;
            let Some(target) = map_mut(c.data_mut(), map) else {
                return Ok(STATUS_NOT_FOUND);
            };
            target.retain(|(k, _)| *k != key);
            target.push((key, value));
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C, map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let value = read(&mut c, value_ptr, value_len)?;
            let Some(target) = map_mut(c.data_mut(), map) else {
                return Ok(STATUS_NOT_FOUND);
            };
            target.push((key, value));
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C, map: i32, key_ptr: i32, key_len: i32| -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?.to_ascii_lowercase();
            let Some(target) = map_mut(c.data_mut(), map) else {
                return Ok(STATUS_NOT_FOUND);
            };
            target.retain(|(k, _)| *k != key);
            Ok(STATUS_OK)
        },
    )?;
    Ok(())
}

fn link_buffers(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C, buffer: i32, start: i32, max: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            let Some(bytes) = buffer_mut(c.data_mut(), buffer).map(|b| b.clone()) else {
                return Ok(STATUS_NOT_FOUND);
            };
            let start = (start as u32 as usize).min(bytes.len());
            let end = start.saturating_add(max as u32 as usize).min(bytes.len());
            return_bytes(&mut c, &bytes[start..end], ptr_out, size_out)?;
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C, buffer: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            let data = read(&mut c, ptr, len)?;
            let Some(target) = buffer_mut(c.data_mut(), buffer) else {
                return Ok(STATUS_NOT_FOUND);
            };
            // Replace [start, start + size) with the data, as Envoy does.
            let start = (start as u32 as usize).min(target.len());
            let end = start.saturating_add(size as u32 as usize).min(target.len());
            target.splice(start..end, data);
            Ok(STATUS_OK)
        },
    )?;
    Ok(())
}

fn link_properties_and_shared_data(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C, path_ptr: i32, path_len: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            let key = property_key(&read(&mut c, path_ptr, path_len)?);
            let state = c.data_mut();
            let effective = state.effective;
            let value = state
                .streams
                .get(&effective)
                .and_then(|s| s.properties.get(&key))
                .or_else(|| state.root_properties.get(&key))
                .cloned();
            return_found(&mut c, value, ptr_out, size_out)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C, path_ptr: i32, path_len: i32, ptr: i32, len: i32| -> Result<i32> {
            let key = property_key(&read(&mut c, path_ptr, path_len)?);
            let value = read(&mut c, ptr, len)?;
            let state = c.data_mut();
            let effective = state.effective;
            let readonly = state.declared.get(&key).copied().unwrap_or(false);
            let properties = match state.streams.get_mut(&effective) {
                Some(stream) => &mut stream.properties,
                None => &mut state.root_properties,
            };
            // A read-only property (Envoy's `declare_property` with `readonly`) takes one write.
            if readonly && properties.contains_key(&key) {
                return Ok(STATUS_BAD_ARGUMENT);
            }
            properties.insert(key, value);
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C, key_ptr: i32, key_len: i32, ptr_out: i32, size_out: i32, cas_out: i32| -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            match c.data().env.shared_data(&key) {
                Some((value, cas)) => {
                    return_bytes(&mut c, &value, ptr_out, size_out)?;
                    write_u32(&mut c, cas_out, cas)?;
                    Ok(STATUS_OK)
                }
                None => Ok(STATUS_NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C, key_ptr: i32, key_len: i32, ptr: i32, len: i32, cas: i32| -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, ptr, len)?;
            Ok(c.data().env.set_shared_data(&key, &value, cas as u32))
        },
    )?;
    Ok(())
}

fn link_streams_and_callouts(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_continue_stream", |mut c: C, stream_type: i32| -> i32 {
        match c.data_mut().stream() {
            Some(stream) if stream_type == 0 => stream.resumed_request += 1,
            Some(stream) if stream_type == 1 => stream.resumed_response += 1,
            _ => return STATUS_BAD_ARGUMENT,
        }
        STATUS_OK
    })?;
    linker.func_wrap("env", "proxy_close_stream", |_c: C, _stream_type: i32| -> i32 { STATUS_OK })?;
    // Envoy's foreign functions: `clear_route_cache` and `declare_property` (both return nothing).
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C, name_ptr: i32, name_len: i32, arg: i32, arg_len: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let arguments = read(&mut c, arg, arg_len)?;
            let state = c.data_mut();
            match name.as_str() {
                "clear_route_cache" => match state.stream() {
                    Some(stream) => stream.route_cache_cleared += 1,
                    None => return Ok(STATUS_BAD_ARGUMENT),
                },
                "declare_property" => {
                    let Ok(declared) = <warden_policy::audit::wire::DeclarePropertyArguments as prost::Message>::decode(
                        arguments.as_slice(),
                    ) else {
                        return Ok(STATUS_BAD_ARGUMENT);
                    };
                    // As Envoy: declared on the root context, once.
                    if state.effective != state.root_id || state.declared.contains_key(&declared.name) {
                        return Ok(STATUS_BAD_ARGUMENT);
                    }
                    state.declared.insert(declared.name, declared.readonly);
                }
                _ => return Ok(STATUS_NOT_FOUND),
            }
            write_u32(&mut c, ptr_out, 0)?;
            write_u32(&mut c, size_out, 0)?;
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         _grpc: i32|
         -> Result<i32> {
            let details = String::from_utf8_lossy(&read(&mut c, details_ptr, details_len)?).into_owned();
            let body = read(&mut c, body_ptr, body_len)?;
            let headers = deserialize_map(&read(&mut c, headers_ptr, headers_len)?)?
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let Some(stream) = c.data_mut().stream() else {
                return Ok(STATUS_BAD_ARGUMENT);
            };
            stream.local_reply = Some(LocalReply { status: status as u32, details, headers, body });
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C,
         up_ptr: i32,
         up_len: i32,
         h_ptr: i32,
         h_len: i32,
         b_ptr: i32,
         b_len: i32,
         _t_ptr: i32,
         _t_len: i32,
         timeout: i32,
         token_out: i32|
         -> Result<i32> {
            let upstream = read_string(&mut c, up_ptr, up_len)?;
            let headers = deserialize_map(&read(&mut c, h_ptr, h_len)?)?
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let body = read(&mut c, b_ptr, b_len)?;
            let state = c.data_mut();
            if state.unknown_clusters.contains(&upstream) {
                return Ok(STATUS_BAD_ARGUMENT); // what Envoy answers for a cluster it does not have
            }
            let token = state.next_token;
            state.next_token += 1;
            let call = HttpCall {
                token,
                context_id: state.effective,
                upstream,
                headers,
                body,
                timeout: Duration::from_millis(timeout as u32 as u64),
            };
            state.http_calls.push(call);
            write_u32(&mut c, token_out, token)?;
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: C,
         up_ptr: i32,
         up_len: i32,
         s_ptr: i32,
         s_len: i32,
         m_ptr: i32,
         m_len: i32,
         md_ptr: i32,
         md_len: i32,
         msg_ptr: i32,
         msg_len: i32,
         timeout: i32,
         token_out: i32|
         -> Result<i32> {
            let upstream = read_string(&mut c, up_ptr, up_len)?;
            let service = read_string(&mut c, s_ptr, s_len)?;
            let method = read_string(&mut c, m_ptr, m_len)?;
            let metadata = if md_len > 0 { deserialize_map(&read(&mut c, md_ptr, md_len)?)? } else { Vec::new() };
            let message = read(&mut c, msg_ptr, msg_len)?;
            let state = c.data_mut();
            let token = state.next_token;
            state.next_token += 1;
            state.grpc_calls.push(GrpcCall {
                token,
                context_id: state.effective,
                upstream,
                service,
                method,
                initial_metadata: metadata
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                message,
                timeout: Duration::from_millis(timeout as u32 as u64),
            });
            write_u32(&mut c, token_out, token)?;
            Ok(STATUS_OK)
        },
    )?;
    Ok(())
}

fn link_metrics(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C, _kind: i32, name_ptr: i32, name_len: i32, id_out: i32| -> Result<i32> {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let state = c.data_mut();
            let id = match state.metric_names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => {
                    state.metric_names.push(name.clone());
                    state.env.update_metric(&name, |_| {});
                    state.metric_names.len() - 1
                }
            };
            write_u32(&mut c, id_out, id as u32)?;
            Ok(STATUS_OK)
        },
    )?;
    linker.func_wrap("env", "proxy_increment_metric", |c: C, id: i32, by: i64| -> i32 {
        let Some(name) = c.data().metric_names.get(id as u32 as usize) else {
            return STATUS_NOT_FOUND;
        };
        c.data().env.update_metric(name, |v| *v += by);
        STATUS_OK
    })?;
    linker.func_wrap("env", "proxy_record_metric", |c: C, id: i32, value: i64| -> i32 {
        let Some(name) = c.data().metric_names.get(id as u32 as usize) else {
            return STATUS_NOT_FOUND;
        };
        c.data().env.update_metric(name, |v| *v = value);
        STATUS_OK
    })?;
    linker.func_wrap("env", "proxy_get_metric", |mut c: C, id: i32, out: i32| -> Result<i32> {
        let Some(name) = c.data().metric_names.get(id as u32 as usize).cloned() else {
            return Ok(STATUS_NOT_FOUND);
        };
        let value = c.data().env.metric(&name);
        write(&mut c, out, &value.to_le_bytes())?;
        Ok(STATUS_OK)
    })?;
    Ok(())
}

fn link_wasi(linker: &mut Linker<VmState>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: C, fd: i32, iovs: i32, iovs_len: i32, written_out: i32| -> Result<i32> {
            let mut total = 0u32;
            for i in 0..iovs_len {
                let entry = read(&mut c, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
                let len = i32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
                let bytes = read(&mut c, ptr, len)?;
                if fd == 1 || fd == 2 {
                    c.data_mut().stdout.extend(&bytes);
                }
                total += len as u32;
            }
            write_u32(&mut c, written_out, total)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(WASI, "environ_sizes_get", |mut c: C, count_out: i32, size_out: i32| -> Result<i32> {
        write_u32(&mut c, count_out, 0)?;
        write_u32(&mut c, size_out, 0)?;
        Ok(0)
    })?;
    linker.func_wrap(WASI, "environ_get", |_c: C, _a: i32, _b: i32| -> i32 { 0 })?;
    linker.func_wrap(WASI, "args_sizes_get", |mut c: C, count_out: i32, size_out: i32| -> Result<i32> {
        write_u32(&mut c, count_out, 0)?;
        write_u32(&mut c, size_out, 0)?;
        Ok(0)
    })?;
    linker.func_wrap(WASI, "args_get", |_c: C, _a: i32, _b: i32| -> i32 { 0 })?;
    linker.func_wrap(WASI, "clock_time_get", |mut c: C, _id: i32, _precision: i64, out: i32| -> Result<i32> {
        let now = c.data().env.now_nanos();
        write(&mut c, out, &now.to_le_bytes())?;
        Ok(0)
    })?;
    linker.func_wrap(WASI, "random_get", |mut c: C, ptr: i32, len: i32| -> Result<i32> {
        // Deterministic bytes: tests must not depend on randomness.
        let bytes: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        memory::write(&mut c, ptr, &bytes)?;
        Ok(0)
    })?;
    linker.func_wrap(WASI, "proc_exit", |_c: C, code: i32| -> Result<()> {
        Err(wasmtime::format_err!("the module called proc_exit({code})"))
    })?;
    linker.func_wrap(WASI, "sched_yield", |_c: C| -> i32 { 0 })?;
    Ok(())
}

/// Links every import the linker does not define to a stub: status "unimplemented" (or
/// ENOSYS for WASI) where the import returns an i32, a trap otherwise.
pub fn stub_missing(linker: &mut Linker<VmState>, store: &mut Store<VmState>, module: &Module) -> Result<()> {
    for import in module.imports() {
        let (module_name, name) = (import.module().to_string(), import.name().to_string());
        if linker.get(&mut *store, &module_name, &name).is_ok() {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        let answer = if module_name == "env" { STATUS_UNIMPLEMENTED } else { 52 };
        let returns_i32 = ty.results().len() == 1 && ty.results().next().is_some_and(|r| r.is_i32());
        let label = format!("{module_name}.{name}");
        linker.func_new(&module_name, &name, ty, move |_caller, _params, results| {
            if returns_i32 {
                results[0] = Val::I32(answer);
                Ok(())
            } else {
                Err(wasmtime::format_err!("host call {label} is not implemented by the test host"))
            }
        })?;
    }
    Ok(())
}
