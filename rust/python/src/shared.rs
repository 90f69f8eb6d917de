//! One engine object shared by every Python thread that holds it: each call *leases* the object
//! (takes it out of its slot), so two threads never use it at once, and a thread that finds it
//! leased waits with the GIL released — the holder may itself be waiting for the GIL to finish.
//!
//! PyO3's own borrow flag would instead raise `RuntimeError: Already borrowed` in the second
//! thread whenever the first had released the GIL in the middle of a call. A lease costs two
//! uncontended mutex operations per call.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;

/// An engine object behind a lease (see the module doc).
pub struct Shared<T> {
    slot: Mutex<Option<T>>,
    returned: Condvar,
}

impl<T: Send> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared {
            slot: Mutex::new(Some(value)),
            returned: Condvar::new(),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<T>> {
        // Only `take`/`put` run under this mutex, and they cannot panic: a poisoned lock still
        // holds a consistent slot.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the object for one call; waits (GIL released) while another thread holds it. Call
    /// it after converting arguments (which may run Python code that uses the same object).
    pub fn lease(&self, py: Python<'_>) -> Lease<'_, T> {
        if let Some(value) = self.slot().take() {
            return Lease {
                home: self,
                value: Some(value),
            };
        }
        let value = py.detach(|| {
            let mut slot = self.slot();
            loop {
                if let Some(value) = slot.take() {
                    return value;
                }
                slot = self
                    .returned
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        });
        Lease {
            home: self,
            value: Some(value),
        }
    }
}

/// The object, held by one call; it goes back when the lease is dropped (also on a panic).
pub struct Lease<'a, T> {
    home: &'a Shared<T>,
    value: Option<T>,
}

impl<T> Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // `value` is `Some` from construction until `drop`.
        match &self.value {
            Some(v) => v,
            None => unreachable!("a lease holds its value until dropped"),
        }
    }
}

impl<T> DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a lease holds its value until dropped"),
        }
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        let mut slot = self
            .home
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = self.value.take();
        drop(slot);
        self.home.returned.notify_one();
    }
}
