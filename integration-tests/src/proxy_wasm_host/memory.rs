//! Guest memory access and the proxy-wasm wire formats (header maps, property paths).

use super::state::VmState;
use wasmtime::{format_err as anyhow, Result};
use wasmtime::{Caller, Extern, Memory};

fn memory(caller: &mut Caller<'_, VmState>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(anyhow!("the module exports no memory")),
    }
}

pub fn read(caller: &mut Caller<'_, VmState>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    memory
        .data(&*caller)
        .get(start..start.checked_add(len).ok_or_else(|| anyhow!("overflow"))?)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow!("guest pointer {start}+{len} is outside memory"))
}

pub fn read_string(caller: &mut Caller<'_, VmState>, ptr: i32, len: i32) -> Result<String> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| anyhow!("guest string is not UTF-8"))
}

pub fn write(caller: &mut Caller<'_, VmState>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory.write(&mut *caller, ptr as u32 as usize, bytes).map_err(|e| anyhow!("guest write failed: {e}"))
}

pub fn write_u32(caller: &mut Caller<'_, VmState>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into memory the guest allocates, and stores its address and size at the
/// two return pointers, as every proxy-wasm "get" call does.
pub fn return_bytes(caller: &mut Caller<'_, VmState>, bytes: &[u8], ptr_out: i32, size_out: i32) -> Result<()> {
    let ptr = if bytes.is_empty() {
        0
    } else {
        let allocate = caller
            .get_export("proxy_on_memory_allocate")
            .or_else(|| caller.get_export("malloc"))
            .and_then(Extern::into_func)
            .ok_or_else(|| anyhow!("the module exports no allocator"))?
            .typed::<i32, i32>(&*caller)?;
        let ptr = allocate.call(&mut *caller, bytes.len() as i32)?;
        write(caller, ptr, bytes)?;
        ptr
    };
    write_u32(caller, ptr_out, ptr as u32)?;
    write_u32(caller, size_out, bytes.len() as u32)
}

/// `count, (key_len, value_len)*, (key \0 value \0)*`, little-endian.
pub fn serialize_map(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v);
        out.push(0);
    }
    out
}

pub fn deserialize_map(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let u32_at = |at: usize| -> Result<usize> {
        let b = bytes.get(at..at + 4).ok_or_else(|| anyhow!("truncated map"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (klen, vlen) in sizes {
        let key = bytes.get(at..at + klen).ok_or_else(|| anyhow!("truncated map"))?;
        at += klen + 1;
        let value = bytes.get(at..at + vlen).ok_or_else(|| anyhow!("truncated map"))?;
        at += vlen + 1;
        pairs.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Ok(pairs)
}

/// A property path is its segments joined by NUL; the host keys properties by `a.b.c`.
pub fn property_key(bytes: &[u8]) -> String {
    bytes.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join(".")
}
