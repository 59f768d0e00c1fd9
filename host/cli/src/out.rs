//! Standard output that tolerates a closed pipe: `cairn ls … | head` ends quietly when `head`
//! stops reading, instead of panicking in `println!`.

use std::io::{ErrorKind, Write};

/// Writes one line to stdout (`outln!`). When the reader has gone away (broken pipe) the
/// process exits quietly with status 0: the output is no longer wanted, nothing failed.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    handle(result);
}

/// Writes text to stdout as is (`outp!`), with the same broken-pipe rule.
pub fn write_text(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| out.flush());
    handle(result);
}

fn handle(result: std::io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            std::process::exit(1);
        }
    }
}

/// Backstop for output written with plain `println!` (which panics on a broken pipe): such a
/// panic ends the process quietly with status 0; every other panic is reported as usual.
pub fn install_broken_pipe_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// `println!` to stdout that exits quietly on a broken pipe.
macro_rules! outln {
    () => {
        $crate::out::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::write_line(format_args!($($arg)*))
    };
}

/// `print!` to stdout that exits quietly on a broken pipe.
macro_rules! outp {
    ($($arg:tt)*) => {
        $crate::out::write_text(format_args!($($arg)*))
    };
}
