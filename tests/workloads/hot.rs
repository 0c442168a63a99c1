// A Rust release binary with a hot function in a module: it must show as hot::burn.
mod hot {
    #[inline(never)]
    pub fn burn(n: u64) -> u64 {
        let mut acc = 0u64;
        for i in 0..n {
            acc = std::hint::black_box(acc.wrapping_add(i ^ (acc >> 3)));
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
