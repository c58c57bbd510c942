//! A value derived from a JS object, kept for as long as that same object comes back.

use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;

/// The last object seen and what was made from it. Identity, not contents, decides: the same
/// object (`Object.is`) gets the value made before, any other object gets a new one.
pub struct PerObject<T> {
    last: RefCell<Option<(JsValue, Rc<T>)>>,
}

impl<T> PerObject<T> {
    pub const fn new() -> Self {
        PerObject {
            last: RefCell::new(None),
        }
    }

    /// The value made from `obj`, made now by `make` unless `obj` is the object seen last. A
    /// failed `make` keeps nothing, so the next call tries again.
    pub fn get_or_try<E>(
        &self,
        obj: &JsValue,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Rc<T>, E> {
        if let Some((seen, value)) = self.last.borrow().as_ref() {
            if js_sys::Object::is(seen, obj) {
                return Ok(Rc::clone(value));
            }
        }
        let value = Rc::new(make()?);
        *self.last.borrow_mut() = Some((obj.clone(), Rc::clone(&value)));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn object(name: &str) -> JsValue {
        let o = js_sys::Object::new();
        js_sys::Reflect::set(&o, &"NAME".into(), &name.into()).unwrap();
        o.into()
    }

    #[wasm_bindgen_test]
    fn the_same_object_is_read_once_and_another_object_again() {
        let cache = PerObject::new();
        let reads = Cell::new(0);
        let read = |o: &JsValue| {
            reads.set(reads.get() + 1);
            Ok::<_, ()>(
                js_sys::Reflect::get(o, &"NAME".into())
                    .unwrap()
                    .as_string()
                    .unwrap(),
            )
        };
        let env = object("one");
        for _ in 0..3 {
            assert_eq!(*cache.get_or_try(&env, || read(&env)).unwrap(), "one");
        }
        assert_eq!(reads.get(), 1);
        // Equal contents, another object: read again (a new env may carry new values).
        let twin = object("one");
        assert_eq!(*cache.get_or_try(&twin, || read(&twin)).unwrap(), "one");
        assert_eq!(reads.get(), 2);
        let other = object("two");
        assert_eq!(*cache.get_or_try(&other, || read(&other)).unwrap(), "two");
        // Only the last object is kept.
        assert_eq!(*cache.get_or_try(&env, || read(&env)).unwrap(), "one");
        assert_eq!(reads.get(), 4);
    }

    #[wasm_bindgen_test]
    fn a_failed_read_keeps_nothing() {
        let cache: PerObject<u32> = PerObject::new();
        let env = object("one");
        assert_eq!(
            cache.get_or_try(&env, || Err("no binding")).err(),
            Some("no binding")
        );
        assert_eq!(*cache.get_or_try(&env, || Ok::<_, &str>(7)).unwrap(), 7);
        assert_eq!(*cache.get_or_try(&env, || Ok::<_, &str>(8)).unwrap(), 7);
    }
}
