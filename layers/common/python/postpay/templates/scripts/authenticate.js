// 3-D Secure: the bank asked the client to confirm the payment. Stripe.js runs its step, then the form
// tells us which PaymentIntent, and we ask Stripe how it went (never trusting the page's word for it).
(function () {
  var form = document.getElementById("auth-form");
  var stripe = Stripe(form.getAttribute("data-key"));
  var error = document.getElementById("auth-error");
  var button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", function (event) {
    if (form.getAttribute("data-done")) return;
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    stripe.confirmCardPayment(form.getAttribute("data-secret")).then(function (result) {
      if (result.error) {
        error.textContent = result.error.message || "The bank did not confirm the payment.";
      }
      form.setAttribute("data-done", "1");
      form.submit();
    });
  });
})();
