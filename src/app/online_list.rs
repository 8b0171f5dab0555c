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
    let count = move || {
        chat.room.with(|room| {
            room.as_ref()
                .map_or(0, |r| r.online_count.max(r.online.len()))
        })
    };
    // A big room lists its first names only; the rest are counted.
    let not_shown = move || count().saturating_sub(online().len());
    view! {
        <aside class="presence" aria-label="Online in this room">
            <h3 class="section-title">
                "Online " <span class="count" data-testid="presence-count">{count}</span>
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
                <Show when=move || { not_shown() > 0 }>
                    <li class="presence-more" data-testid="presence-more">
                        {move || format!("and {} more", not_shown())}
                    </li>
                </Show>
            </ul>
        </aside>
    }
}
