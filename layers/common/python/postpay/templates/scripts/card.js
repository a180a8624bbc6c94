// Add a card: Stripe.js collects the card in its own element and confirms the SetupIntent with Stripe;
// only the SetupIntent's id comes back to us, in the form below. No card data touches our functions.
(function () {
  var form = document.getElementById("card-form");
  var stripe = Stripe(form.getAttribute("data-key"));
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var error = document.getElementById("card-error");
  var button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", function (event) {
    if (form.elements.setup_intent.value) return;
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    stripe.confirmCardSetup(form.getAttribute("data-secret"), { payment_method: { card: card } })
      .then(function (result) {
        if (result.error) {
          error.textContent = result.error.message || "The card could not be saved.";
          button.disabled = false;
          return;
        }
        form.elements.setup_intent.value = result.setupIntent.id;
        form.submit();
      });
  });
})();
