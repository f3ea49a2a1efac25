//! A single-threaded wake-up flag for tasks on one executor: "there is work
//! for you". Setting it twice before the task runs wakes it once.
//!
//! Owns: one flag and at most one waiting task's waker. Does not own: the
//! work itself. Not `Send`; it never crosses cores.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default, Debug)]
pub struct Notify {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Marks work as pending and wakes the waiting task, if any.
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Drops the waiting task's waker without waking it. A waker keeps its
    /// task's allocation alive, so a connection that parks (its task ends
    /// while its link lives on) must let go of it.
    pub fn forget_waiter(&self) {
        self.waker.borrow_mut().take();
    }

    /// Resolves once [`Notify::notify`] has been called since the last
    /// time this resolved.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.pending.replace(false) {
            return Poll::Ready(());
        }
        *self.notify.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
