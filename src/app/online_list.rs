//! Who is in the open room right now.

use super::connection::Chat;
use super::identity::initial;
use leptos::prelude::*;

#[component]
pub fn OnlineList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let online = move || {
        chat.room
            .with(|room| room.as_ref().map(|r| r.online.clone()).unwrap_or_default())
    };
    view! {
        <aside class="presence" aria-label="Online in this room">
            <h3 class="section-title">
                "Online " <span class="count">{move || online().len()}</span>
            </h3>
            <ul data-testid="presence-list" class="presence-list">
                <For
                    each=online
                    key=|name| name.clone()
                    children=move |name| {
                        view! {
                            <li data-testid="presence-item" class="presence-item" data-name=name.clone()>
                                <span class="avatar small" aria-hidden="true" data-initial=initial(&name)></span>
                                <span class="name">{name.clone()}</span>
                            </li>
                        }
                    }
                />
            </ul>
        </aside>
    }
}
