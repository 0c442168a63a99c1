// A Rust release binary with a hot function in a module: it must show as hot::burn.
mod hot {
    #[inline(never)]
    pub fn burn(n: u64) -> u64 {
        let mut acc = 0u64;
        for i in 0..n {
            // a volatile store and load keep the optimiser from folding the loop
            // (std::hint::black_box needs Rust 1.66; Debian 12 ships 1.63)
            unsafe { std::ptr::write_volatile(&mut acc, acc.wrapping_add(i ^ (acc >> 3))) };
            acc = unsafe { std::ptr::read_volatile(&acc) };
        }
        acc
    }
}
fn main() {
    let rounds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let mut s = 0u64;
    for _ in 0..rounds {
        s = s.wrapping_add(hot::burn(1_000_000));
    }
    println!("{}", s & 1);
}
