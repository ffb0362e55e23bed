from __future__ import annotations


def test_the_system_chromium_renders_a_page(browser):
    page = browser.new_page()
    page.set_content("<h1>synth</h1>")
    assert page.inner_text("h1") == "synth"
    page.close()
