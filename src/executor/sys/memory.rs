//! Giving back the memory a long-lived process only needed to start: the monitor parses the
//! OCI spec, builds the container and reports, then spends the container's lifetime in a
//! small `poll` loop. The code pages the start touched stay mapped (and count in its RSS, a
//! whole fault-around window at a time) although the loop never runs them again; the heap
//! keeps the freed start-up allocations.
//!
//! Only pages whose contents are exactly the file's are dropped: pages of our own
//! executable's private, non-writable mappings that `/proc/self/pagemap` shows are not
//! private (copy-on-write) copies. Dropping such a page cannot change what the process sees:
//! the next access maps the same bytes again from the page cache. Writable mappings, and the
//! pages of read-only ones written before they were protected (relocations, RELRO), stay.

use std::io;
use std::os::unix::fs::FileExt;

/// Runs advised from a stack array (see [`release_start_up_memory`]); a static executable
/// has one or two, a dynamic one a few more around its relocated data.
const MAX_RUNS_ON_STACK: usize = 64;

/// `pagemap` bits (see the kernel's `Documentation/admin-guide/mm/pagemap.rst`).
const PAGE_PRESENT: u64 = 1 << 63;
const PAGE_SWAPPED: u64 = 1 << 62;
const PAGE_FILE_OR_SHARED: u64 = 1 << 61;

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// The ranges of `maps` (the text of `/proc/self/maps`) mapped private and not writable from
/// the file `exe`.
fn read_only_mappings_of(maps: &str, exe: &str) -> Vec<Range> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            let perms = fields.next()?.as_bytes();
            // offset, device, inode; what is left is the path (it may hold spaces).
            let path = fields.skip(3).collect::<Vec<&str>>().join(" ");
            let read_only_private = perms.len() == 4 && perms[1] != b'w' && perms[3] == b'p';
            (read_only_private && path == exe && start < end).then_some(Range { start, end })
        })
        .collect()
}

/// The range of the main thread's stack in `maps`.
fn main_stack(maps: &str) -> Option<Range> {
    let line = maps.lines().find(|line| line.ends_with(" [stack]"))?;
    let (start, end) = line.split_ascii_whitespace().next()?.split_once('-')?;
    Some(Range {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
    })
}

/// Bytes below the stack pointer that are kept: the red zone, and the frames of the calls
/// made while the stack is trimmed (`madvise` itself), with a wide margin.
const STACK_MARGIN: usize = 16 * 1024;

/// The part of `stack` that lies below `stack_pointer` by more than [`STACK_MARGIN`]: frames
/// of calls that have returned, whose pages a deep start-up left resident.
fn dead_stack(stack: Range, stack_pointer: usize, page_size: usize) -> Option<Range> {
    if stack_pointer < stack.start || stack_pointer > stack.end {
        return None;
    }
    let end = stack_pointer.checked_sub(STACK_MARGIN)? / page_size * page_size;
    (end > stack.start).then_some(Range {
        start: stack.start,
        end,
    })
}

/// The runs of pages, from `start` on, whose `pagemap` `entries` are not a private copy
/// (present or swapped anonymous memory): the pages that hold the file's bytes or are not
/// mapped at all.
fn file_backed_runs(start: usize, entries: &[u64], page_size: usize) -> Vec<Range> {
    let mut runs: Vec<Range> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let private_copy = entry & PAGE_SWAPPED != 0
            || (entry & PAGE_PRESENT != 0 && entry & PAGE_FILE_OR_SHARED == 0);
        if private_copy {
            continue;
        }
        let page = start + index * page_size;
        match runs.last_mut() {
            Some(run) if run.end == page => run.end = page + page_size,
            _ => runs.push(Range {
                start: page,
                end: page + page_size,
            }),
        }
    }
    runs
}

/// Drops the resident file pages of this process's read-only executable mappings and
/// returns the heap memory the allocator no longer uses to the kernel. Returns the bytes
/// advised. Other threads may run meanwhile (they fault back what they touch), but nothing in
/// the process may write to or change the protection of the executable's mappings between
/// the read of `pagemap` and the advice: Carrack never does (no `mprotect`, no `dlopen` of
/// itself).
pub fn release_start_up_memory() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let pagemap = std::fs::File::open("/proc/self/pagemap")?;
    let page_size = rustix::param::page_size();
    // Every run is found before the first page is dropped: reading `pagemap` between the
    // advice calls would fault back the code that reads it.
    let mut runs = Vec::new();
    for mapping in read_only_mappings_of(&maps, &exe) {
        let pages = (mapping.end - mapping.start) / page_size;
        let mut raw = vec![0u8; pages * 8];
        pagemap.read_exact_at(&mut raw, (mapping.start / page_size * 8) as u64)?;
        let entries: Vec<u64> = raw
            .chunks_exact(8)
            .map(|bytes| u64::from_ne_bytes(bytes.try_into().unwrap_or([0xff; 8])))
            .collect();
        runs.extend(file_backed_runs(mapping.start, &entries, page_size));
    }
    // On the main thread only: its stack is the one `maps` names, and the pages below the
    // current frame (plus a margin) belong to calls that have returned.
    let on_main_thread = rustix::thread::gettid() == rustix::process::getpid();
    let stack_pointer = std::ptr::addr_of!(page_size) as usize;
    let dead = main_stack(&maps)
        .filter(|_| on_main_thread)
        .and_then(|stack| dead_stack(stack, stack_pointer, page_size));
    // Whatever runs after the code pages are dropped faults its own page back in, and the
    // kernel maps a 64 KiB window around each: so everything else comes first (the heap
    // memory this function allocated is freed and trimmed, the stack dropped), and the
    // advice loop reads the runs from this frame, not from the heap.
    let mut few = [Range { start: 0, end: 0 }; MAX_RUNS_ON_STACK];
    let (from_stack, from_heap) = if runs.len() <= few.len() {
        few[..runs.len()].copy_from_slice(&runs);
        (&few[..runs.len()], Vec::new())
    } else {
        (&few[..0], runs.split_off(0))
    };
    drop((exe, maps, pagemap, runs));
    // SAFETY: malloc_trim only releases free heap memory back to the kernel; it takes no
    // pointer and allocated blocks are untouched.
    unsafe { libc::malloc_trim(0) };
    if let Some(dead) = dead {
        // SAFETY: the range lies in this thread's own stack, more than STACK_MARGIN below a
        // local of the current frame: no live frame or reference is there (the calls made
        // until the advice returns need far less), and the next use of those pages gets zeroed
        // memory, as a fresh stack page would be.
        unsafe {
            rustix::mm::madvise(
                dead.start as *mut std::ffi::c_void,
                dead.end - dead.start,
                rustix::mm::Advice::LinuxDontNeed,
            )
        }?;
    }
    let mut advised = 0;
    for run in from_stack.iter().chain(&from_heap) {
        let len = run.end - run.start;
        // SAFETY: the run lies in a private, non-writable mapping of the executable file,
        // and `pagemap` showed none of its pages is a private copy: what it maps is the
        // file's bytes, and without write permission no page can become a copy meanwhile.
        // MADV_DONTNEED only drops page-table entries that the next access restores with
        // identical bytes; no Rust reference can observe a difference.
        // (The raw system call, not libc's wrapper: code run after the advice faults back
        // in, and libc's lies in another 64 KiB window than this function.)
        unsafe {
            rustix::mm::madvise(
                run.start as *mut std::ffi::c_void,
                len,
                rustix::mm::Advice::LinuxDontNeed,
            )
        }?;
        advised += len;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/usr/bin/carrack-monitor";

    #[test]
    fn only_read_only_private_mappings_of_the_executable_are_chosen() {
        let maps = [
            "55d0a0000000-55d0a0010000 r--p 00000000 fd:01 123 /usr/bin/carrack-monitor",
            "55d0a0010000-55d0a0400000 r-xp 00010000 fd:01 123 /usr/bin/carrack-monitor",
            "55d0a0420000-55d0a0430000 rw-p 00420000 fd:01 123 /usr/bin/carrack-monitor",
            "55d0a0430000-55d0a0440000 r--s 00430000 fd:01 123 /usr/bin/carrack-monitor",
            "55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0 [heap]",
            "7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6",
            "7f0000100000-7f0000101000 r-xp 00000000 fd:01 124 /usr/bin/carrack-monitor (deleted)",
            "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]",
        ]
        .join("\n");
        assert_eq!(
            read_only_mappings_of(&maps, EXE),
            vec![
                Range {
                    start: 0x55d0_a000_0000,
                    end: 0x55d0_a001_0000
                },
                Range {
                    start: 0x55d0_a001_0000,
                    end: 0x55d0_a040_0000
                },
            ]
        );
    }

    #[test]
    fn the_dead_part_of_the_stack_is_below_the_margin() {
        let maps = "7ffd00000000-7ffd00100000 rw-p 00000000 00:00 0 [stack]\n";
        let stack = main_stack(maps).expect("a stack");
        assert_eq!(
            stack,
            Range {
                start: 0x7ffd_0000_0000,
                end: 0x7ffd_0010_0000
            }
        );
        assert_eq!(
            dead_stack(stack, 0x7ffd_000f_f123, 0x1000),
            Some(Range {
                start: 0x7ffd_0000_0000,
                end: 0x7ffd_000f_b000
            })
        );
        // Too close to the bottom, or not on this stack: nothing.
        assert_eq!(dead_stack(stack, 0x7ffd_0000_2000, 0x1000), None);
        assert_eq!(dead_stack(stack, 0x1000_0000, 0x1000), None);
    }

    #[test]
    fn private_copies_split_the_runs() {
        let file = PAGE_PRESENT | PAGE_FILE_OR_SHARED | 42;
        let anonymous = PAGE_PRESENT | 43;
        let swapped = PAGE_SWAPPED;
        let absent = 0;
        let entries = [file, absent, anonymous, file, swapped, absent, file];
        assert_eq!(
            file_backed_runs(0x1000, &entries, 0x1000),
            vec![
                Range {
                    start: 0x1000,
                    end: 0x3000
                },
                Range {
                    start: 0x4000,
                    end: 0x5000
                },
                Range {
                    start: 0x6000,
                    end: 0x8000
                },
            ]
        );
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        // The test binary's own code pages go and come back while other test threads run.
        let before: Vec<u64> = (0..1000).map(|n| n * 3).collect();
        release_start_up_memory().expect("release");
        let after: Vec<u64> = (0..1000).map(|n| n * 3).collect();
        assert_eq!(before, after);
    }
}
